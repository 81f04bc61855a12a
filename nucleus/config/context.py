"""What a copied context leaves out: secrets, credentials, VCS metadata and build junk.

Pure data plus a matcher on names; the copy itself is an effect (nucleus.effects.fs).
"""

from __future__ import annotations

import fnmatch

# Exact names (files or directories) never copied into /context.
EXCLUDED_NAMES = frozenset({
    ".git", ".hg", ".svn", "target", "node_modules", "__pycache__", ".DS_Store", ".env",
    ".ssh", ".gnupg", ".aws", ".azure", ".gcloud", ".docker", ".netrc", ".kube", ".helm",
    ".npmrc", ".pypirc", ".git-credentials",
})
# Glob patterns on the name.
EXCLUDED_GLOBS = (
    ".env.*", "*.swp", "*.swo", "*.pem", "*.key", "*.p12", "*.crt", "*.pfx", "*.jks",
)
# Substrings (case-insensitive) that mark a name as a credential.
EXCLUDED_SUBSTRINGS = ("credential", "secret", "private_key", "kubeconfig")


def excluded(name: str) -> bool:
    if name in EXCLUDED_NAMES:
        return True
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in EXCLUDED_GLOBS):
        return True
    lowered = name.lower()
    return any(s in lowered for s in EXCLUDED_SUBSTRINGS)


def exclusion_list() -> tuple[str, ...]:
    """The patterns, as data for the CopyTree intent."""
    return tuple(sorted(EXCLUDED_NAMES)) + EXCLUDED_GLOBS + tuple(f"*{s}*" for s in EXCLUDED_SUBSTRINGS)
