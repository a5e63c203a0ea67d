"""Tables, the engine factory and schema migrations. Nothing else lives here."""

from models.analytics import (AnalyticsAppDay, AnalyticsAppTotal, AnalyticsAppViewer,
                              AnalyticsViewerMonth, AnalyticsWorkspaceMonth)
from models.engine import make_engine, migrate, session_scope
from models.github import AppGithub, GithubAccount, GithubGrant
from models.tables import (ApiToken, App, AppEvent, AppSecret, AppViewer, Build, EmailOutbox,
                           Favorite, Membership, User, ViewEvent, Workspace, utcnow)

__all__ = ["AnalyticsAppDay", "AnalyticsAppTotal", "AnalyticsAppViewer",
           "AnalyticsViewerMonth", "AnalyticsWorkspaceMonth", "ApiToken", "App", "AppEvent",
           "AppGithub", "AppSecret", "AppViewer", "Build", "EmailOutbox", "Favorite",
           "GithubAccount", "GithubGrant", "Membership", "User", "ViewEvent", "Workspace",
           "utcnow", "make_engine", "migrate", "session_scope"]
