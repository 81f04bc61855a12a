"""What a copied context leaves out: one matcher for the copy and the integrity manifest."""

from __future__ import annotations

import pytest

from nucleus.config.context import excluded, exclusion_list

PATTERNS = exclusion_list()


@pytest.mark.parametrize("name", [
    ".git", "node_modules", ".env", ".env.local", "id.pem", "ID.PEM", "server.key", "Key.P12",
    "SECRET.txt", "my_credentials.json", "kubeconfig", "prod-Private_Key", "notes.swp",
])
def test_secrets_and_junk_stay_out(name):
    assert excluded(name, PATTERNS)


@pytest.mark.parametrize("name", ["Makefile", "src", "README.md", "env", ".envrc", "keys.txt", ".GIT"])
def test_ordinary_names_are_copied(name):
    assert not excluded(name, PATTERNS)


def test_only_star_patterns_also_match_in_lower_case():
    assert excluded("A.TXT", ("*.txt",)) and not excluded("A.TXT", ("a.txt",))
    assert not excluded("anything", ())
