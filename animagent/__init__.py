"""animagent: a short story in, a multi-scene animated film with consistent characters out, on local open models.

Public API only. Importing animagent imports no torch and has no side effects.
"""

from animagent.artifacts import Film, Script
from animagent.config import Config, load_config
from animagent.errors import AnimagentError


def make_film(story_path, profile="default", out=None, config_file=None, overrides=(), seed=None, script=None) -> Film:
    """Render `story_path` (or a given `script` json) into a film in the run folder `out`; returns the Film."""
    from animagent.runs import make_film as _make_film

    return _make_film(story_path, profile=profile, out=out, config_file=config_file, overrides=overrides,
                      seed=seed, script=script)


__all__ = ["AnimagentError", "Config", "Film", "Script", "load_config", "make_film"]
