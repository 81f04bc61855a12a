"""What a copied context leaves out (nucleus.config.context.Matcher, the one matcher of the
measurement, the copy and the manifest): the secret files the rules must catch, the ordinary
files they must not (both ways, with their near misses), case folding, private keys by their
first bytes, the ignore file and the patterns that keep what a rule would leave out."""

from __future__ import annotations

import pytest

from nucleus.config.context import (
    KIND_OF,
    RULES,
    SECRET_KINDS,
    Matcher,
    describe_rule,
    exclusion_list,
    kind_of,
    private_key,
)
from nucleus.effects.prepare import compile_patterns

BUILT_IN = Matcher(exclusion_list())


def left_out(name: str, is_dir: bool = False, matcher: Matcher = BUILT_IN) -> str | None:
    return matcher.why(name, name, is_dir)


# The files issue 9 found copied: each is left out now, by a secret rule.
SECRETS = [
    ("id_rsa", False), ("id_ecdsa", False), ("id_ed25519", False), (".pgpass", False),
    ("work.ppk", False), (".vault-token", False), ("terraform.tfstate", False),
    (".htpasswd", False), (".dockercfg", False), ("service-account.json", False),
    (".bash_history", False), ("token.txt", False), (".ENV", False), (".SSH", True),
]
# More of each kind, and the names the old rules already caught.
MORE_SECRETS = [
    ("id_dsa", False), ("id_ed25519_sk", False), ("ID_RSA", False), ("server.key", False),
    ("store.p12", False), ("app.jks", False), ("vault.kdbx", False),
    (".gnupg", True), (".aws", True), (".Aws", True), (".kube", True), (".docker", True),
    (".netrc", False), (".npmrc", False), (".pypirc", False), (".git-credentials", False),
    (".my.cnf", False), ("terraform.tfstate.backup", False), ("prod.tfstate", False),
    ("service_account_prod.json", False), ("kubeconfig", False), ("kubeconfig.yaml", False),
    ("credentials", False), ("credentials.json", False), ("Credentials.json", False),
    ("client_secret_123.apps.googleusercontent.com.json", False), ("secrets.yaml", False),
    ("my_secret.txt", False), ("db_password_secret", False), ("mySecret.json", False),
    ("passwords.csv", False), ("passwd", False), ("access_token", False), ("token", False),
    (".token", False), ("secrets", True), ("credentials", True), (".zsh_history", False),
    (".python_history", False), ("fish_history", False), (".psql_history", False),
    (".lesshst", False), (".viminfo", False), (".env", False), (".env.local", False),
    (".env.production", False), ("prod.env", False), ("secrets.json.bak", False),
]
# Ordinary files the old rules dropped, and near misses of the rules above: all copied.
ORDINARY = [
    ("secrets_manager.py", False), ("credentials_test.py", False), (".env.example", False),
    (".env.sample", False), (".env.template", False), (".ENV.EXAMPLE", False),
    ("id_rsa.pub", False), ("id_ed25519.pub", False), ("identity.md", False),
    ("token.py", False), ("tokenize.py", False), ("secrets.py", False),
    ("special_tokens_map.json", False), ("tokenizer.json", False), ("Secretary", False),
    ("password_reset.html", False), ("password_reset", True), ("SecretsManager.java", False),
    ("secret-handling.md", False), ("credential_helper.sh", False), ("keys.txt", False),
    ("key", False), ("keyboard.c", False), ("env", False), (".envrc", False),
    ("environment.yml", False), ("history.md", False), ("history", False),
    ("terraform.tf", False), ("secrets.tf", False), ("main.tfvars", False),
    ("service-account.md", False), ("kube", True), ("ssh", True), ("ssh_config", False),
    ("Makefile", False), ("README.md", False), ("src", True),
    ("certificate.crt", False), ("known_hosts", False), ("authorized_keys", False),
]


@pytest.mark.parametrize(("name", "is_dir"), SECRETS + MORE_SECRETS, ids=lambda x: str(x))
def test_secrets_are_left_out_by_a_secret_rule(name, is_dir):
    rule = left_out(name, is_dir)
    assert rule is not None, name
    assert kind_of(rule) in SECRET_KINDS, (name, rule)


@pytest.mark.parametrize(("name", "is_dir"), ORDINARY, ids=lambda x: str(x))
def test_ordinary_files_and_near_misses_are_copied(name, is_dir):
    assert left_out(name, is_dir) is None, (name, left_out(name, is_dir))


@pytest.mark.parametrize("name", [".git", ".GIT", ".hg", "node_modules", "__pycache__", ".DS_Store",
                                  ".ds_store", "target", "notes.swp"])
def test_vcs_metadata_and_junk_are_left_out_but_not_as_secrets(name):
    rule = left_out(name, True)
    assert rule is not None and kind_of(rule) in ("vcs", "junk")


def test_a_file_named_like_a_directory_rule_is_left_out_too():
    assert left_out(".ssh", False) == ".ssh" and left_out(".aws", False) == ".aws"


def test_the_words_of_a_name():
    """A word rule matches whole words only: split at separators and at case changes."""
    assert left_out("DBPasswordFile") == "word:password"
    assert left_out("apiTokenValue.txt") == "word:token"
    assert left_out("tokens.txt") is None  # "tokens" is a vocabulary's file, not a credential
    assert left_out("password") == "word:password"


def test_every_rule_has_a_kind_and_reads_well():
    assert [rule for rule, _ in RULES] == list(exclusion_list())
    assert set(KIND_OF.values()) <= {"vcs", "junk", "key", "credential", "history", "env"}
    assert describe_rule("id_rsa") == "private key (id_rsa)"
    assert describe_rule("content:private-key") == "private key (by its content)"
    assert describe_rule("word:secret") == "credentials or token (word:secret)"
    assert describe_rule(".nucleusignore:build/") == ".nucleusignore (build/)"
    assert describe_rule("special") == "not a file, directory or symlink"


def test_no_rules_leave_nothing_out():
    assert Matcher().why(".env", ".env", False) is None
    assert not Matcher().checks_content("key", "key", 100)


# --- private keys by their first bytes --------------------------------------------------------

PEM_BODY = b"\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"


@pytest.mark.parametrize("header", [
    b"-----BEGIN RSA PRIVATE KEY-----" + PEM_BODY,
    b"-----BEGIN PRIVATE KEY-----" + PEM_BODY,
    b"-----BEGIN ENCRYPTED PRIVATE KEY-----" + PEM_BODY,
    b"-----BEGIN EC PRIVATE KEY-----" + PEM_BODY,
    b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n",
    b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF...\n",
    b"---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nComment: x\n",
    b"PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n",
    b"Bag Attributes\n    localKeyID: 01 02\n-----BEGIN PRIVATE KEY-----" + PEM_BODY,
    b'{\n  "type": "service_account",\n  "project_id": "p",\n  "private_key": '
    b'"-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n",\n}',
], ids=["rsa", "pkcs8", "encrypted", "ec", "openssh", "pgp", "ssh2", "putty", "pkcs12-export",
        "service-account-json"])
def test_private_keys_are_recognised_by_their_first_bytes(header):
    assert private_key(header)
    assert BUILT_IN.content(header) == "content:private-key"


@pytest.mark.parametrize("header", [
    b"-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n",
    b"-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUF\n",
    b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk me@host\n",
    b'KEY = "-----BEGIN RSA PRIVATE KEY-----"  # a parser\'s marker, not a key\n',
    b"This file explains PRIVATE KEY handling.\n",
    b"",
], ids=["public-key", "certificate", "ssh-public", "marker-in-code", "prose", "empty"])
def test_near_misses_of_a_key_header_are_not_keys(header):
    assert not private_key(header)


def test_only_data_files_are_read_for_the_key_check():
    assert BUILT_IN.checks_content("deploy", "deploy", 1700) == 4096
    assert BUILT_IN.checks_content("a/notes.txt", "notes.txt", 10) == 4096
    # A PEM file is read whole: a key may follow a chain of certificates.
    assert BUILT_IN.checks_content("tls/bundle.PEM", "bundle.PEM", 9000) == 9000
    assert left_out("cacert.pem") is None  # not by its name: a certificate bundle is copied
    assert not BUILT_IN.checks_content("test_keys.py", "test_keys.py", 1700)  # source: its content is code
    assert not BUILT_IN.checks_content("empty", "empty", 0)
    assert not BUILT_IN.checks_content("big.bin", "big.bin", 2 << 20)


# --- the ignore file and --context-include ----------------------------------------------------


def ignoring(*lines: str, include: tuple[str, ...] = ()) -> Matcher:
    return Matcher(exclusion_list(), compile_patterns(list(lines), ".nucleusignore line {number}"),
                   compile_patterns(list(include), "--context-include {number}"))


def test_the_ignore_file_leaves_out_more_with_gitignore_syntax():
    m = ignoring("# build output", "", "build/", "*.log", "!keep.log", "/top-only", "docs/**/*.pdf")
    assert m.why("build", "build", True) == ".nucleusignore:build/"
    assert m.why("src/build", "build", True) == ".nucleusignore:build/"
    assert m.why("build", "build", False) is None  # a directory pattern: not this file
    assert m.why("x/app.log", "app.log", False) == ".nucleusignore:*.log"
    assert m.why("keep.log", "keep.log", False) is None  # negated: the last matching line wins
    assert m.why("top-only", "top-only", False) == ".nucleusignore:/top-only"
    assert m.why("sub/top-only", "top-only", False) is None  # anchored at the context's root
    assert m.why("docs/a/b/x.pdf", "x.pdf", False) == ".nucleusignore:docs/**/*.pdf"
    assert m.why("App.LOG", "App.LOG", False) is None  # case-sensitive, as git's


def test_a_negated_ignore_line_cannot_keep_what_a_built_in_rule_leaves_out():
    m = ignoring("!.env", "!id_rsa")
    assert m.why(".env", ".env", False) == ".env"
    assert m.why("id_rsa", "id_rsa", False) == "id_rsa"


def test_include_patterns_keep_what_any_rule_leaves_out():
    m = ignoring("fixtures/", include=(".env.test", "fixtures/", ".ssh/config"))
    assert m.why(".env.test", ".env.test", False) is None
    assert m.why("sub/.env.test", ".env.test", False) is None
    assert m.why(".env", ".env", False) == ".env"
    assert m.why("fixtures", "fixtures", True) is None  # kept over the ignore file
    assert m.why("fixtures/id_rsa", "id_rsa", False) is None  # and everything in it
    assert not m.checks_content("fixtures/key", "key", 100)
    assert m.why(".ssh", ".ssh", True) == ".ssh"  # .ssh/config alone does not open .ssh


def test_an_included_directory_is_entered_and_its_own_rules_still_apply():
    m = ignoring(include=(".ssh/",))
    assert m.why(".ssh", ".ssh", True) is None
    # A pattern naming a directory keeps all of it (gitignore: a directory's pattern covers its
    # contents); to keep only some of it, name those entries.
    assert m.why(".ssh/id_ed25519", "id_ed25519", False) is None


def test_a_bad_pattern_names_its_line():
    from nucleus.errors import InvalidInput

    with pytest.raises(InvalidInput) as info:
        compile_patterns(["ok", "x\\"], ".nucleusignore line {number}")
    assert info.value.message.startswith(".nucleusignore line 2: 'x\\\\' is not a pattern")
