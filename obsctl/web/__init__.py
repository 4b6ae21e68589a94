"""``obsctl serve``: the same answers as the CLI, as read-only web pages for support staff."""
