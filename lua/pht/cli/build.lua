-- pht build: make a train, the central side (scripts/build.lua).
local options = require "pht.cli.options"
local runner = require "pht.cli.runner"

local say, EXIT = runner.say, runner.EXIT

-- The route from the --station values: { {station=, key_path=, eco_system=} }.
local function stops_of(values)
  local stops = {}
  for _, s in ipairs(values) do
    local id, path, eco = s:match("^([^=]+)=([^,]+),?(.*)$")
    if not id then return nil, "--station wants ID=PUBKEY[,ECO], got " .. s end
    stops[#stops + 1] = { station = id, key_path = path, eco_system = eco ~= "" and eco or "tue" }
  end
  return stops
end

-- The files from the --file values: { {name=, path=} }.
local function files_of(values)
  local files = {}
  for _, f in ipairs(values) do
    local name, path = f:match("^([^=]+)=(.+)$")
    if not name then return nil, "--file wants NAME=PATH, got " .. f end
    files[#files + 1] = { name = name, path = path }
  end
  return files
end

-- The usage error in opts, or nil.
local function usage_error(opts)
  for _, n in ipairs({ "creator-id", "creator-key", "base", "output" }) do
    if not opts[n] then return "missing --" .. n end
  end
  if not opts.files and not opts.file then return "give the train's files with --files or --file" end
  if opts.files and opts.file then return "give --files or --file, not both" end
  if not opts.station then return "give the route with --station (one per stop)" end
  return nil
end

return options.verb {
  name = "build",
  summary = "make a train (central side)",
  usage = "--files DIR --station ID=PUBKEY ... --creator-id ID\n"
    .. "                 --creator-key PEM --base IMAGE --output IMAGE [options]",
  args = {},
  description = [[
Make a train: hash the immutable files into e_h, have the creator sign it and
the builder sign the build, encrypt every file under a fresh key wrapped for
the first stop, and write the image with /opt/train_config.json,
/opt/pht_train and an empty /opt/pht_results on top of the base image.
The output gets two tags: REPO:latest (the train) and REPO:base (the base),
e.g. --output docker-archive:train.tar:pht/train:latest.]],
  options = {
    { name = "files", arg = "DIR",
      help = "the train's files: every regular file under DIR in walk order (DIR/query.json becomes the query)" },
    { name = "file", arg = "NAME=PATH", many = true,
      help = "one file, in file_list order (repeatable; instead of --files)" },
    { name = "query", arg = "FILE", help = "query.json, hashed last and not in file_list" },
    { name = "station", arg = "ID=PUBKEY[,ECO]", many = true,
      help = "a route stop in order: its id, public key PEM file, eco system (tue, default, or padme) (repeatable)" },
    { name = "creator-id", arg = "ID", help = "the creator's id (hashed into e_h)" },
    { name = "creator-key", arg = "PEM", help = "the creator's private key: signs e_h" },
    { name = "creator-password-env", arg = "VAR", default = "PHT_CREATOR_KEY_PASSWORD",
      help = "the variable holding its password" },
    { name = "builder-key", arg = "PEM", help = "the builder's private key (default: a fresh RSA-2048 key)" },
    { name = "builder-password-env", arg = "VAR", default = "PHT_BUILDER_KEY_PASSWORD",
      help = "the variable holding its password" },
    { name = "base", arg = "IMAGE", help = "the image the train runs on" },
    { name = "output", arg = "IMAGE",
      help = "docker-archive:PATH:REPO:latest, oci:DIR:latest or REPO:latest (the Docker daemon)" },
    { name = "run", arg = "NAME", help = "the train file `docker run IMAGE` starts with /bin/sh "
      .. "(default: entrypoint.sh when the train has one; `none` keeps the base image's command)" },
    { name = "train-id", arg = "ID", help = "the config's @id (default: random)" },
    { name = "proposal-id", arg = "ID", help = "the config's proposal_id (default: 1)" },
    options.group "registry",
    options.group "workflow",
  },
  exit_status = "0 built, 1 refused, 2 usage error, 3 I/O error.",
  run = function(host, prog, opts)
    local why = usage_error(opts)
    if why then say(prog, "%s", why) return EXIT.usage end
    local stops, serr = stops_of(opts.station)
    if not stops then say(prog, "%s", serr) return EXIT.usage end
    local files, ferr
    if opts.file then
      files, ferr = files_of(opts.file)
      if not files then say(prog, "%s", ferr) return EXIT.usage end
    end
    local refs, rerr = runner.image_refs({ base = opts.base, output = opts.output })
    if not refs then say(prog, "%s", rerr) return EXIT.usage end
    local registry, gerr = runner.registry_options(opts)
    if not registry then say(prog, "%s", gerr) return EXIT.usage end
    local o = {
      files_dir = opts.files, files = files, query = opts.query, stops = stops,
      creator_id = opts["creator-id"], creator_key = opts["creator-key"],
      creator_password = runner.env(opts["creator-password-env"]),
      builder_key = opts["builder-key"],
      builder_password = runner.env(opts["builder-password-env"]),
      base = refs.base, output = refs.output, train_id = opts["train-id"],
      proposal_id = opts["proposal-id"], tmpdir = opts.tmpdir, run = opts.run,
      registry = registry, docker_timeout = opts.timeout,
    }
    local code, ctx = runner.run_workflow(prog, "build", opts, o)
    if code == EXIT.ok and not opts.quiet then
      say(prog, "built train %s for %d stop(s) into %s (and %s)", ctx.train_id, #stops, ctx.written, ctx.base_written)
    end
    return code
  end,
}
