"""Where apps' code comes from: git clones and head commits (`gitsync`), SSH with an app's
deploy key (`git_auth`), the source trees on disk and in-place updates (`checkouts`), and
what a push does to a running app (`updates`)."""
