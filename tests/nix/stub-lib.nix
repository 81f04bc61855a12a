# The part of nixpkgs' lib (and the module system's `utils`) that nix/module.nix uses, enough to
# evaluate it without nixpkgs: an option is its declaration, a type records what it holds.
rec {
  mkOption = decl: decl // { _type = "option"; };
  mkEnableOption = what: mkOption { type = types.bool; default = false; description = "Whether to enable ${what}."; };
  mkIf = condition: content: { _type = "if"; inherit condition content; };
  mapAttrsToList = f: attrs: map (name: f name attrs.${name}) (builtins.attrNames attrs);
  types = {
    str = { name = "str"; };
    int = { name = "int"; };
    bool = { name = "bool"; };
    package = { name = "package"; };
    enum = values: { name = "enum"; inherit values; };
    nullOr = elemType: { name = "nullOr"; inherit elemType; };
    listOf = elemType: { name = "listOf"; inherit elemType; };
    attrsOf = elemType: { name = "attrsOf"; inherit elemType; };
    submodule = module: { name = "submodule"; inherit module; };
  };
  # nixpkgs' utils.escapeSystemdExecArg(s): JSON strings, % and $ doubled.
  escapeSystemdExecArg = arg: builtins.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON (toString arg));
  escapeSystemdExecArgs = args: builtins.concatStringsSep " " (map escapeSystemdExecArg args);
}
