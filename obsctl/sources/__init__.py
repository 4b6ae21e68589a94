"""Where bytes and answers come from: log files, HTTP clients for Loki and Prometheus."""
