"""Builds: which dependency file an app's environment comes from and what it asks for
(`dependencies`, `formats`, `plan`), the `Build` rows and build logs of each attempt
(`records`), and the message a person reads when a build step fails (`errors`)."""
