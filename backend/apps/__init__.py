"""Apps as their developers see them: deploy, reboot, delete and state (`service`, `deploy`,
`state`), the list and settings pages (`listing`, `settings`), secrets, sharing and
favorites, logs and their files (`logs`, `log_files`), push webhooks (`hooks`), and the
explanation of a failure (`failures`, `failure_reports`)."""
