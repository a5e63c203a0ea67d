"""Favorites: per user, on any app of a workspace the user can see (seed: "Favorites are
specific to your account")."""

from __future__ import annotations

from sqlmodel import select

from backend.context import Context
from backend.errors import NotFound
from backend.workspaces import role_in
from models import App, Favorite, User, id_of, session_scope


def set_favorite(ctx: Context, user: User, app_id: int, favorite: bool) -> None:
    """Star or unstar an app; idempotent."""
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        if app is None or app.desired_state == "deleted" or \
                role_in(s, user, app.workspace_id) is None:
            raise NotFound(f"App {app_id} does not exist (it may have been deleted).")
        row = s.exec(select(Favorite).where(Favorite.user_id == user.id,
                                            Favorite.app_id == app_id)).first()
        if favorite and row is None:
            s.add(Favorite(user_id=id_of(user), app_id=app_id))
        elif not favorite and row is not None:
            s.delete(row)


def favorite_ids(ctx: Context, user: User) -> set[int]:
    with session_scope(ctx.engine) as s:
        return set(s.exec(select(Favorite.app_id).where(Favorite.user_id == user.id)).all())
