"""Repositories before and after a deploy: the checks a deploy makes on a branch
(`checks`), the one way platform code reads a checkout's files (`files`), and where a
repository URL may lead (`hosts`)."""
