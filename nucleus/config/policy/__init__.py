"""Security policy files: seccomp profiles (OCI JSON), capability and Landlock policies (TOML),
and their sha256 pins.

Each parser takes the file's bytes and the path to name in messages, validates everything, and
returns a normalized value; any problem raises ``InvalidInput`` naming the file, the dotted field
path and the bad value, with a hint where the fix is known. Pure: the host facts a profile depends
on (architecture, kept capabilities, kernel version) are parameters; nothing here looks at the
host.

- ``seccomp_profile``: OCI/Docker seccomp profiles (``parse_seccomp_profile``), with
  ``seccomp_args`` (argument conditions and the rules they expand to) and ``seccomp_host``
  (architectures, ``archMap`` and Docker's ``includes``/``excludes``, for the host facts given);
- ``caps_policy``: capability policies (``parse_caps_policy``, ``CapsPolicy``);
- ``landlock_policy``: Landlock policies (``parse_landlock_policy``, ``LandlockPolicy``);
- ``pins``: sha256 pins of policy files (``check_pin``);
- ``common``: what the parsers share: JSON and TOML loading, messages with field paths,
  closest-name suggestions.
"""
