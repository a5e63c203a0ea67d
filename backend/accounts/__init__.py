"""People and their credentials: accounts and sign-in (`auth`), admin-managed users
(`users`), visitor identity on app hosts (`identity`), personal API tokens (`api_tokens`) and
the server's own secret files (`keys`)."""
