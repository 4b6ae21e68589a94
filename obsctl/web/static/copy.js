// "Copy" next to the ticket text: shown only when script runs; the text can always be selected.
for (const button of document.querySelectorAll("button[data-copy]")) {
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) continue;
  button.hidden = false;
  button.addEventListener("click", () => {
    navigator.clipboard.writeText(source.textContent).then(
      () => { button.textContent = "Copied"; },
      () => { button.textContent = "Select the text and copy it"; },
    );
  });
}
