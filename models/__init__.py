"""Tables, the engine factory and schema migrations. Nothing else lives here."""

from models.engine import make_engine, migrate, session_scope
from models.tables import (ApiToken, App, AppEvent, AppSecret, AppViewer, Build, EmailOutbox,
                           Favorite, Membership, User, ViewEvent, Workspace, utcnow)

__all__ = ["ApiToken", "App", "AppEvent", "AppSecret", "AppViewer", "Build", "EmailOutbox",
           "Favorite", "Membership", "User", "ViewEvent", "Workspace", "utcnow",
           "make_engine", "migrate", "session_scope"]
