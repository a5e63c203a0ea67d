"""Builds: the `Build` rows and build logs of each clone-and-environment attempt
(`records`), and the message a person reads when a build step fails (`errors`)."""
