"""The GitHub integration: connected accounts and the workspaces they give (`accounts`),
PyGithub clients and their errors (`client`), deploying from GitHub with deploy keys and
webhooks (`deploy`), and the periodic refresh the supervisor schedules (`sync`)."""
