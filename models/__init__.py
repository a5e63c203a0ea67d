"""Tables, the engine factory and schema migrations. Nothing else lives here."""

from models.analytics import (
    AnalyticsAppDay,
    AnalyticsAppTotal,
    AnalyticsAppViewer,
    AnalyticsViewerMonth,
    AnalyticsWorkspaceMonth,
)
from models.cluster import AppRequest, ClusterLease, ClusterNode, SigninToken
from models.engine import make_engine, migrate, session_scope
from models.git_credentials import AppGitCredential
from models.github import AppGithub, GithubAccount, GithubGrant
from models.oidc import OidcClient, OidcCode, OidcKey  # noqa: F401  (OIDC provider)
from models.previews import AppPreview, AppPreviewConfig
from models.resources import InstanceUsageSample, MemoryWatch  # noqa: F401 (resources)
from models.rows import id_of, table_of
from models.secret_values import AppSecretValue
from models.security import SigninFailure  # noqa: F401  (sign-in limiter)
from models.setting_overrides import SettingChange, SettingOverride  # noqa: F401
from models.sleep_policy import AppSleepPolicy
from models.tables import (
    ApiToken,
    App,
    AppEvent,
    AppSecret,
    AppViewer,
    Build,
    EmailOutbox,
    Favorite,
    Installation,
    Membership,
    Notification,
    User,
    ViewEvent,
    Workspace,
    utcnow,
)
from models.usage import UsageSample

__all__ = ["AnalyticsAppDay", "AnalyticsAppTotal", "AnalyticsAppViewer", "AnalyticsViewerMonth",
           "AnalyticsWorkspaceMonth", "ApiToken", "App", "AppEvent", "AppGitCredential",
           "AppGithub", "AppPreview", "AppPreviewConfig", "AppRequest", "AppSecret",
           "AppSecretValue", "AppSleepPolicy", "AppViewer", "Build", "ClusterLease", "ClusterNode",
           "EmailOutbox", "Favorite", "GithubAccount", "GithubGrant", "Installation", "Membership",
           "Notification", "SigninToken", "UsageSample", "User", "ViewEvent", "Workspace", "id_of",
           "table_of", "utcnow", "make_engine", "migrate", "session_scope"]
