"""--secret SRC:DEST parsed and refused before anything runs (each refusal names the flag and
the value), the names production refuses in the environment, and the mount plan a secret adds:
no byte of a secret is in any intent."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.config import secrets as s
from nucleus.config.container import ContainerConfig
from nucleus.errors import InvalidInput
from nucleus.plan import mounts


def test_a_secret_in_run_secrets_and_one_bound_elsewhere():
    got = s.parse(("/path/to/api-key:/run/secrets/api_key", "/a:b/tls-cert:/etc/tls/cert.pem"))
    assert got == (s.Secret("/path/to/api-key", "/run/secrets/api_key"), s.Secret("/a:b/tls-cert", "/etc/tls/cert.pem"))
    assert [(x.name, x.bound) for x in got] == [("api_key", False), ("cert.pem", True)]
    assert s.landlock_rules(got) == (("/run/secrets", False), ("/etc/tls/cert.pem", False))
    assert s.landlock_rules(()) == ()


@pytest.mark.parametrize(("values", "message"), [
    (("/k",), "--secret '/k': expected SRC:DEST"),
    ((":/run/secrets/k",), "--secret ':/run/secrets/k': expected SRC:DEST"),
    (("/k:api_key",), "--secret '/k:api_key': DEST 'api_key' must be an absolute path inside the container"),
    (("/k:/run/secrets/../etc/x",), "--secret '/k:/run/secrets/../etc/x': DEST '/run/secrets/../etc/x' is not a normalized path"),
    (("/k:/etc//x",), "--secret '/k:/etc//x': DEST '/etc//x' is not a normalized path"),
    (("/k:/run/secrets",), "--secret '/k:/run/secrets': DEST '/run/secrets' must name a file directly in /run/secrets"),
    (("/k:/run/secrets/a/b",), "--secret '/k:/run/secrets/a/b': DEST '/run/secrets/a/b' must name a file directly in /run/secrets"),
    (("/k:/proc/sys/kernel/x",), "--secret '/k:/proc/sys/kernel/x': DEST '/proc/sys/kernel/x' is in /proc, where nothing is bound"),
    (("/k:/dev/null",), "--secret '/k:/dev/null': DEST '/dev/null' is in /dev"),
    (("/k:/",), "--secret '/k:/': DEST '/' is not a normalized path"),
    (("/k:/run/secrets/.hidden",), "DEST '/run/secrets/.hidden' must end in a file name"),
    (("/a:/run/secrets/k", "/b:/run/secrets/k"), "--secret '/b:/run/secrets/k': '/a' is already at '/run/secrets/k'"),
    (("/a:/run/secrets/k", "/b:/etc/k"), "--secret '/b:/etc/k': '/run/secrets/k' is already /run/secrets/k"),
])
def test_refusals_name_the_flag_and_the_value(values, message):
    with pytest.raises(InvalidInput) as e:
        s.parse(values)
    assert message in e.value.message


def test_at_most_64_secrets():
    with pytest.raises(InvalidInput, match="65 secrets, at most 64"):
        s.parse(tuple(f"/k{i}:/run/secrets/k{i}" for i in range(65)))


@pytest.mark.parametrize("name", ["API_TOKEN", "GITHUB_TOKEN", "DB_PASSWORD", "aws_secret_access_key",
                                  "OPENAI_API_KEY", "SSH_PRIVATE_KEY", "CREDENTIALS", "MYSQL_PASSWD",
                                  "APIKEY", "STRIPE_SECRET"])
def test_names_that_look_like_secrets(name):
    assert s.looks_secret(name)


@pytest.mark.parametrize("name", ["PATH", "HOME", "TOKENIZERS_PARALLELISM", "POSTGRES_PASSWORD_FILE",
                                  "KEYBOARD", "GOOGLE_APPLICATION_CREDENTIALS_PATH", "SECRETARY_NAME",
                                  "DEBUG", "KEY_ID"])
def test_names_that_do_not(name):
    assert not s.looks_secret(name)


def test_production_refuses_a_secret_looking_name_naming_its_flag():
    s.refuse_secret_environment(False, (("-e", "API_TOKEN"),))  # agent and strict-agent: allowed
    with pytest.raises(InvalidInput) as e:
        s.refuse_secret_environment(True, (("-e", "DEBUG"), ("--env-file", "API_TOKEN")))
    assert e.value.message.startswith("--env-file 'API_TOKEN': a variable that looks like a secret is "
                                      "refused in production mode (row \"Secrets\"")
    assert e.value.hint.startswith("put the value in a file and pass --secret FILE:/run/secrets/api_token")


def test_the_mount_plan_carries_no_secret_byte():
    config = ContainerConfig(argv=("true",), secrets=s.parse(("/host/key:/run/secrets/key",
                                                              "/host/cert:/etc/tls/cert.pem")))
    layout = mounts.HostLayout(system=(), rootfs_dir="/r", owner=(100000, 100000), user=(1000, 1000))
    ops = mounts.plan(config, layout, "h")
    secret_ops = [op for op in ops if "secrets" in repr(op)]
    assert secret_ops == [
        v.MakeDirs("/r", ("run/secrets",), 0o755),
        v.MountFs("tmpfs", "/r/run/secrets", ("nosuid", "nodev", "noexec"),
                  "size=16777216,mode=0500,uid=101000,gid=101000"),
        v.WriteSecret("/r/run/secrets/key", 0, 0o400, (101000, 101000)),
        v.WriteSecret("/r/run/secrets/cert.pem", 1, 0o400, (101000, 101000)),
        v.RemountFs("/r/run/secrets", ("rdonly", "nosuid", "nodev", "noexec")),
        v.BindSecret("/r/run/secrets/cert.pem", "/r", "/etc/tls/cert.pem", ("rdonly", "nosuid", "nodev", "noexec")),
    ]
    # ... before the root is made read-only
    assert ops.index(secret_ops[-1]) < ops.index(v.RemountFs("/r", ("rdonly", "nosuid", "nodev")))
    assert not [op for op in mounts.plan(ContainerConfig(argv=("true",)), layout, "h") if "secrets" in repr(op)]


def _placed(secret: str, *flags: str, context: str | None = None, context_mode: str = "copy") -> InvalidInput:
    from nucleus.config import container as container_rules
    from nucleus.config import volumes as volume_rules

    config = ContainerConfig(argv=("true",), secrets=s.parse((secret,)), context=context, context_mode=context_mode,
                             volumes=tuple(volume_rules.parse(f) for f in flags))
    with pytest.raises(InvalidInput) as e:
        container_rules.validate(config)
    assert e.value.exit_code == 125
    return e.value


@pytest.mark.parametrize(("secret", "volume", "where"), [
    ("/k:/data/conf/key", "/srv/data:/data", "below"),
    ("/k:/data", "/srv/data:/data:ro", "on"),
    ("/k:/data", "/srv/data:/data/sub", "above"),
])
def test_a_dest_at_a_volume_is_refused_naming_both(secret, volume, where):
    problem = _placed(secret, volume)
    dest = secret.split(":")[1]
    assert problem.message == (f"--secret {secret!r}: DEST {dest!r} is {where} the path of -v/--volume "
                               f"'{volume if volume.endswith(':ro') else volume + ':rw'}': its mount point would "
                               f"be made in the host's '/srv/data'")
    assert problem.hint is not None and "/run/secrets" in problem.hint


@pytest.mark.parametrize("mode", ["bind", "copy"])
def test_a_dest_in_the_context_is_refused(mode):
    problem = _placed("/k:/context/conf/key", context="/srv/project", context_mode=mode)
    assert problem.message == ("--secret '/k:/context/conf/key': DEST '/context/conf/key' is below /context, "
                               "the context: its mount point would be made there")


def test_a_dest_beside_a_volume_and_in_etc_pass():
    from nucleus.config import container as container_rules
    from nucleus.config import volumes as volume_rules

    config = ContainerConfig(argv=("true",), secrets=s.parse(("/k:/etc/tls/cert.pem", "/j:/data2/key")),
                             volumes=(volume_rules.parse("/srv/data:/data"),))
    assert container_rules.validate(config) == config
