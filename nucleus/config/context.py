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


def exclusion_list() -> tuple[str, ...]:
    """The patterns, as data for the CopyTree and VerifyTree intents."""
    return tuple(sorted(EXCLUDED_NAMES)) + EXCLUDED_GLOBS + tuple(f"*{s}*" for s in EXCLUDED_SUBSTRINGS)


def excluded(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether a copy with `patterns` leaves `name` out: the one matcher of the copy and of the
    integrity manifest. A pattern matches the name as written; one that starts with "*" (a
    suffix or a substring) also matches it in lower case, so SECRET.txt and id.PEM stay out."""
    lowered = name.lower()
    return any(
        fnmatch.fnmatchcase(name, p) or (p.startswith("*") and fnmatch.fnmatchcase(lowered, p))
        for p in patterns
    )
