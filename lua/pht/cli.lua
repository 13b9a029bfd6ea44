-- The `pht` command line (doc/cli.md). cli/main.c calls main(args, host)
-- and exits with its return value; host.scripts_dir is where the stock
-- workflows are (../share/libpht-scripts beside the binary).
local M = {}

-- Exit codes (doc/cli.md).
M.EXIT = {
  ok = 0,
  rejected = 1,   -- a verification or policy step failed: the train is refused
  usage = 2,      -- the command line is wrong
  io = 3,         -- an image, key or file could not be read or written
  internal = 70,  -- a bug (a Lua error in libpht or in a station script)
}
local EXIT = M.EXIT

local VERBS = {}
local ORDER = { "pre-run", "post-run", "inspect", "build", "decrypt-results", "keygen" }

-- Output ----------------------------------------------------------------------

local function stderr(...) io.stderr:write(...) end

local function say(prog, fmt, ...)
  stderr(prog, ": ", select("#", ...) > 0 and string.format(fmt, ...) or fmt, "\n")
end

-- Option parsing --------------------------------------------------------------

-- spec.options: name -> { arg = "META" } for options taking a value,
-- { flag = true } for switches; many = true collects repeats in a list;
-- short = "q" adds -q. spec.args = { min, max } positional arguments.
local function parse(spec, argv)
  local opts, pos = {}, {}
  local short = {}
  for name, o in pairs(spec.options) do if o.short then short[o.short] = name end end
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      for j = i + 1, #argv do pos[#pos + 1] = argv[j] end
      break
    elseif a == "-h" or a == "--help" then
      opts.help = true
    elseif a:sub(1, 2) == "--" or (a:sub(1, 1) == "-" and #a == 2) then
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      if not name then
        name = a:sub(1, 2) == "--" and a:sub(3) or short[a:sub(2)]
        if not name then return nil, "unknown option " .. a end
      end
      local o = spec.options[name]
      if not o then return nil, "unknown option --" .. name end
      if o.flag then
        if value then return nil, "option --" .. name .. " takes no value" end
        opts[name] = true
      else
        if not value then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, "option --" .. name .. " needs a value (" .. o.arg .. ")" end
        end
        if o.many then
          opts[name] = opts[name] or {}
          table.insert(opts[name], value)
        else
          if opts[name] ~= nil then return nil, "option --" .. name .. " given twice" end
          opts[name] = value
        end
      end
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return nil, "unknown option " .. a
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  if opts.help then return opts, pos end
  local min, max = spec.args[1], spec.args[2]
  if #pos < min then return nil, "missing " .. spec.arg_names[#pos + 1] end
  if #pos > max then return nil, "unexpected argument " .. pos[max + 1] end
  return opts, pos
end
M.parse = parse

local function env(name)
  local v = os.getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

-- An IMAGE argument as a reference: a name without one of libpht's
-- transports ("repo:tag", "registry:5000/repo:tag") is an image in the
-- Docker daemon at $DOCKER_HOST, as the reference takes it.
local TRANSPORTS = { ["docker-archive"] = true, oci = true, ["docker-daemon"] = true }
local function image_ref(s)
  if s == nil then return nil end
  local t = s:match("^([%w%-]+):")
  if (t and TRANSPORTS[t]) or s:match("^docker://") then return s end
  return "docker-daemon:" .. s
end
M.image_ref = image_ref

-- The host's scripts directory ($PHT_SCRIPTS_DIR wins).
local function scripts_dir(host)
  return env("PHT_SCRIPTS_DIR") or (host and host.scripts_dir) or "scripts"
end

-- Running workflows ------------------------------------------------------------

local function make_logger(prog, opts)
  local level = opts.quiet and 0 or (opts.verbose and 2 or 1)
  return function(lvl, msg)
    if lvl == "warn" or (lvl == "info" and level >= 1) or (lvl == "debug" and level >= 2) then
      say(prog, "%s", msg)
    end
  end
end

-- Load a stock workflow from the scripts directory. A fresh copy every time.
local function load_stock(host, file)
  local path = scripts_dir(host) .. "/" .. file
  local chunk, err = loadfile(path)
  if not chunk then return nil, "cannot load the stock workflow " .. path .. ": " .. tostring(err) end
  local ok, wf = pcall(chunk)
  if not ok then return nil, "the stock workflow " .. path .. " failed to load: " .. tostring(wf) end
  return wf
end

local function exit_for(failure)
  if failure.code == "EINTERNAL" then return EXIT.internal end
  if failure.kind == "io" or failure.kind == "write" then return EXIT.io end
  return EXIT.rejected
end

-- Build the context, apply --script files, run, report. Returns exit code, ctx.
local function run_workflow(host, prog, file, opts, options)
  local workflow = require "pht.workflow"
  local wf, err = load_stock(host, file)
  if not wf then say(prog, "%s", err) return EXIT.internal end
  local ctx = workflow.context({ options = options, logger = make_logger(prog, opts), program = prog })
  ctx.progress = function(c, i, n, step)
    c:log("info", string.format("[%d/%d] %s", i, n, step.name))
  end
  for _, script in ipairs(opts.script or {}) do
    local ok, serr = workflow.customise(wf, script, ctx)
    if not ok then
      ctx:cleanup() -- what the script made (a temporary directory) goes
      say(prog, "%s", serr)
      return EXIT.usage
    end
  end
  local ok, failure = wf:run(ctx)
  if not ok then
    say(prog, "%s", tostring(failure))
    return exit_for(failure), ctx
  end
  return EXIT.ok, ctx
end

-- The station's identity and key, from flags or the reference's variables.
local function station_options(opts)
  local station = opts.station or env("STATION_ID")
  local key = opts.key or env("PRIVATE_KEY_PATH")
  if not station then return nil, "no station id: give --station or set STATION_ID" end
  if not key then return nil, "no private key: give --key or set PRIVATE_KEY_PATH" end
  local pw_var = opts["password-env"] or "PRIVATE_KEY_PASSWORD"
  return { station = station, key_path = key, password = env(pw_var) }
end

-- The help lines of the options pre-run and post-run share.
local STATION_OPTIONS_HELP = [[
  --station ID         this station's id on the route (default: $STATION_ID)
  --key PEM            this station's private key (default: $PRIVATE_KEY_PATH)
  --password-env VAR   read the key's password from $VAR (default: PRIVATE_KEY_PASSWORD)
  --output IMAGE       write the result there instead of over IMAGE
]]

-- Run a station's workflow (pre-run, post-run) and report where it wrote.
local function run_station(host, prog, opts, options, file, done)
  local code, ctx = run_workflow(host, prog, file, opts, options)
  if code == EXIT.ok and not opts.quiet then
    say(prog, "station %s %s into %s (stop %d of %d)%s", tostring(ctx.stop.station), done.what,
      ctx.written, ctx.pos, #ctx.stops, done.note or "")
  end
  return code
end

-- Verbs -----------------------------------------------------------------------

local COMMON = {
  script = { arg = "FILE", many = true },
  tmpdir = { arg = "DIR" },
  quiet = { flag = true, short = "q" },
  verbose = { flag = true, short = "v" },
}

local function with_common(t)
  for k, v in pairs(COMMON) do if t[k] == nil then t[k] = v end end
  return t
end

-- The options of pre-run and post-run: the station's, the common ones, `extra`.
local function station_verb_options(extra)
  local t = { station = { arg = "ID" }, key = { arg = "PEM" }, ["password-env"] = { arg = "VAR" },
    output = { arg = "IMAGE" } }
  for k, v in pairs(extra or {}) do t[k] = v end
  return with_common(t)
end

VERBS["pre-run"] = {
  summary = "verify a train and decrypt it for this station",
  args = { 1, 1 }, arg_names = { "IMAGE" },
  options = station_verb_options(),
  help = [[
Usage: pht pre-run IMAGE [options]

Verify the train in IMAGE for this station (doc/protocol.md §7 and libpht's
stricter checks) and write its decrypted files back into the image, in a new
layer marked as plaintext. Nothing is written unless every check passed.
After pre-run the image holds plaintext: it must not leave the station.

IMAGE is docker-archive:PATH[:NAME:TAG], oci:DIR[:TAG], or an image in the
Docker daemon at $DOCKER_HOST: docker-daemon:NAME[:TAG] or just NAME:TAG.

Options:
]] .. STATION_OPTIONS_HELP .. [[
  --script FILE        a station script that changes the workflow (repeatable)
  --tmpdir DIR         where the private temporary directory goes (default: $TMPDIR or /tmp)
  -q, --quiet          no progress on stderr
  -v, --verbose        also report each step that passed
  -h, --help           this text

Exit status: 0 verified and decrypted, 1 rejected (the message names the step),
2 usage error, 3 an image or key could not be read or written, 70 internal error.
]],
  run = function(host, prog, opts, pos)
    local options, err = station_options(opts)
    if not options then say(prog, "%s", err) return EXIT.usage end
    options.image, options.output, options.tmpdir = image_ref(pos[1]), image_ref(opts.output), opts.tmpdir
    return run_station(host, prog, opts, options, "pre_run.lua",
      { what = "verified the train and decrypted it", note = "; it now holds plaintext" })
  end,
}

VERBS["post-run"] = {
  summary = "sign, encrypt and seal the results after the train ran",
  args = { 1, 1 }, arg_names = { "IMAGE" },
  options = station_verb_options({ rebase = { flag = true }, base = { arg = "IMAGE" } }),
  help = [[
Usage: pht post-run IMAGE [options]

Hash and sign the results the train left in IMAGE, add this station's link to
the route's signature chain, encrypt the results and the train's files under a
fresh key for every stop and the creator (doc/protocol.md §8), and write the
train back with no plaintext in any layer: the new /opt goes on the layers
below the one pre-run wrote, or with --rebase on REPO:base.

Options:
]] .. STATION_OPTIONS_HELP .. [[
  --rebase             build on REPO:base (the image the train was built from)
  --base IMAGE         with --rebase: the base image, if not REPO:base beside IMAGE
  --script FILE        a station script that changes the workflow (repeatable)
  --tmpdir DIR         where the private temporary directory goes
  -q, --quiet          no progress on stderr
  -v, --verbose        also report each step that passed
  -h, --help           this text

Exit status: 0 sealed, 1 refused (the message names the step), 2 usage error,
3 an image or key could not be read or written, 70 internal error.
]],
  run = function(host, prog, opts, pos)
    local options, err = station_options(opts)
    if not options then say(prog, "%s", err) return EXIT.usage end
    if opts.base and not opts.rebase then say(prog, "--base needs --rebase") return EXIT.usage end
    options.image, options.output, options.tmpdir = image_ref(pos[1]), image_ref(opts.output), opts.tmpdir
    options.rebase, options.base = opts.rebase, image_ref(opts.base)
    return run_station(host, prog, opts, options, "post_run.lua",
      { what = "signed and encrypted the results" })
  end,
}

VERBS["decrypt-results"] = {
  summary = "the creator reads the results of a train",
  args = { 1, 1 }, arg_names = { "IMAGE" },
  options = with_common({
    key = { arg = "PEM" }, ["password-env"] = { arg = "VAR" }, out = { arg = "DIR" },
  }),
  help = [[
Usage: pht decrypt-results IMAGE --key PEM --out DIR [options]

Unwrap the results key with the creator's private key, decrypt
/opt/pht_results, check it against result_hash, result_signature and the last
stop's chain digest, and only then write the plaintext under DIR (created with
mode 0700; it must not exist yet).

Options:
  --key PEM            the creator's private key
  --password-env VAR   read the key's password from $VAR (default: PRIVATE_KEY_PASSWORD)
  --out DIR            where the results go
  --script FILE        a script that changes the workflow (repeatable)
  --tmpdir DIR         where the private temporary directory goes
  -q, --quiet          no progress on stderr
  -v, --verbose        also report each step that passed
  -h, --help           this text

Exit status: 0 written, 1 the results do not verify, 2 usage error, 3 I/O error.
]],
  run = function(host, prog, opts, pos)
    if not opts.key then say(prog, "give the creator's key with --key") return EXIT.usage end
    if not opts.out then say(prog, "give the output directory with --out") return EXIT.usage end
    local options = { image = image_ref(pos[1]), key_path = opts.key, out = opts.out, tmpdir = opts.tmpdir,
      password = env(opts["password-env"] or "PRIVATE_KEY_PASSWORD") }
    local code, ctx = run_workflow(host, prog, "decrypt_results.lua", opts, options)
    if code == EXIT.ok and not opts.quiet then
      say(prog, "wrote %d result file(s) to %s", #ctx.results, opts.out)
    end
    return code
  end,
}

VERBS["build"] = {
  summary = "make a train (central side)",
  args = { 0, 0 }, arg_names = {},
  options = with_common({
    files = { arg = "DIR" }, file = { arg = "NAME=PATH", many = true }, query = { arg = "FILE" },
    station = { arg = "ID=PUBKEY[,ECO]", many = true },
    ["creator-id"] = { arg = "ID" }, ["creator-key"] = { arg = "PEM" },
    ["creator-password-env"] = { arg = "VAR" },
    ["builder-key"] = { arg = "PEM" }, ["builder-password-env"] = { arg = "VAR" },
    base = { arg = "IMAGE" }, output = { arg = "IMAGE" },
    ["train-id"] = { arg = "ID" }, ["proposal-id"] = { arg = "ID" },
    run = { arg = "NAME" },
  }),
  help = [[
Usage: pht build --files DIR --station ID=PUBKEY ... --creator-id ID
                 --creator-key PEM --base IMAGE --output IMAGE [options]

Make a train: hash the immutable files into e_h, have the creator sign it and
the builder sign the build, encrypt every file under a fresh key wrapped for
the first stop, and write the image with /opt/train_config.json,
/opt/pht_train and an empty /opt/pht_results on top of the base image.
The output gets two tags: REPO:latest (the train) and REPO:base (the base),
e.g. --output docker-archive:train.tar:pht/train:latest.

Options:
  --files DIR              the train's files: every regular file under DIR in
                           walk order (DIR/query.json becomes the query)
  --file NAME=PATH         one file, in file_list order (repeatable; instead of --files)
  --query FILE             query.json, hashed last and not in file_list
  --station ID=PUBKEY[,ECO]  a route stop in order: its id, public key PEM file,
                           eco system (tue, default, or padme) (repeatable)
  --creator-id ID          the creator's id (hashed into e_h)
  --creator-key PEM        the creator's private key: signs e_h
  --creator-password-env VAR   its password's variable
  --builder-key PEM        the builder's private key (default: a fresh RSA-2048 key)
  --builder-password-env VAR   its password's variable
  --base IMAGE             the image the train runs on
  --output IMAGE           docker-archive:PATH:REPO:latest, oci:DIR:latest or
                           REPO:latest (the Docker daemon)
  --run NAME               the train file `docker run IMAGE` starts with /bin/sh
                           (default: entrypoint.sh when the train has one;
                           `none` keeps the base image's command)
  --train-id ID            the config's @id (default: random)
  --proposal-id ID         the config's proposal_id (default: 1)
  --script FILE            a script that changes the build workflow (repeatable)
  --tmpdir DIR             where the private temporary directory goes
  -q, --quiet              no progress on stderr
  -v, --verbose            also report each step that passed
  -h, --help               this text

Exit status: 0 built, 1 refused, 2 usage error, 3 I/O error.
]],
  run = function(host, prog, opts, pos)
    local need = { "creator-id", "creator-key", "base", "output" }
    for _, n in ipairs(need) do
      if not opts[n] then say(prog, "missing --%s", n) return EXIT.usage end
    end
    if not opts.files and not opts.file then say(prog, "give the train's files with --files or --file") return EXIT.usage end
    if opts.files and opts.file then say(prog, "give --files or --file, not both") return EXIT.usage end
    if not opts.station then say(prog, "give the route with --station (one per stop)") return EXIT.usage end
    local stops = {}
    for _, s in ipairs(opts.station) do
      local id, path, eco = s:match("^([^=]+)=([^,]+),?(.*)$")
      if not id then say(prog, "--station wants ID=PUBKEY[,ECO], got %s", s) return EXIT.usage end
      stops[#stops + 1] = { station = id, key_path = path, eco_system = eco ~= "" and eco or "tue" }
    end
    local files
    if opts.file then
      files = {}
      for _, f in ipairs(opts.file) do
        local name, path = f:match("^([^=]+)=(.+)$")
        if not name then say(prog, "--file wants NAME=PATH, got %s", f) return EXIT.usage end
        files[#files + 1] = { name = name, path = path }
      end
    end
    local options = {
      files_dir = opts.files, files = files, query = opts.query, stops = stops,
      creator_id = opts["creator-id"], creator_key = opts["creator-key"],
      creator_password = env(opts["creator-password-env"] or "PHT_CREATOR_KEY_PASSWORD"),
      builder_key = opts["builder-key"],
      builder_password = env(opts["builder-password-env"] or "PHT_BUILDER_KEY_PASSWORD"),
      base = image_ref(opts.base), output = image_ref(opts.output), train_id = opts["train-id"],
      proposal_id = opts["proposal-id"], tmpdir = opts.tmpdir, run = opts.run,
    }
    local code, ctx = run_workflow(host, prog, "build.lua", opts, options)
    if code == EXIT.ok and not opts.quiet then
      say(prog, "built train %s for %d stop(s) into %s (and %s)", ctx.train_id, #stops, ctx.written, ctx.base_written)
    end
    return code
  end,
}

VERBS["inspect"] = {
  summary = "show a train's route, whose turn it is and what verifies",
  args = { 1, 1 }, arg_names = { "IMAGE" },
  options = { json = { flag = true }, tmpdir = { arg = "DIR" } },
  help = [[
Usage: pht inspect IMAGE [--json]

Show the train in IMAGE without any private key: its files, route, whose turn
it is, and which of its signatures verify with the public keys it carries
(the creator's and the builder's over e_h, each stop's chain signature,
result_signature, the last chain digest against result_hash), and whether the
image holds plaintext from a pre-run.

Options:
  --json        print one JSON object instead of text
  --tmpdir DIR  where temporary files go
  -h, --help    this text

Exit status: 0 everything that can be checked without keys verifies, 1 something
does not, 2 usage error, 3 the image cannot be read.
]],
  run = function(host, prog, opts, pos)
    local inspect = require "pht.inspect"
    local report, err = inspect.image(image_ref(pos[1]), opts.tmpdir)
    if not report then say(prog, "%s", err) return EXIT.io end
    if opts.json then
      io.stdout:write(assert(require("pht").json_encode(report, true)), "\n")
    else
      io.stdout:write(inspect.text(report))
    end
    return report.ok and EXIT.ok or EXIT.rejected
  end,
}

VERBS["keygen"] = {
  summary = "make an RSA key pair",
  args = { 0, 0 }, arg_names = {},
  options = { out = { arg = "NAME" }, bits = { arg = "N" }, ["password-env"] = { arg = "VAR" },
    force = { flag = true } },
  help = [[
Usage: pht keygen --out NAME [--bits N] [--password-env VAR] [--force]

Make an RSA key pair: NAME.pem (PKCS#8 private key, mode 0600, encrypted with
AES-256-CBC when --password-env names a set variable) and NAME.pub.pem (SPKI
public key). Prints the public key's fingerprint (SHA-256 of its DER).

Options:
  --out NAME           path prefix of the two files
  --bits N             key size (default 2048, at least 2048)
  --password-env VAR   encrypt the private key with the password in $VAR
  --force              overwrite existing files
  -h, --help           this text

Exit status: 0 written, 2 usage error, 3 the files could not be written.
]],
  run = function(host, prog, opts)
    local pht = require "pht"
    local fs = require "pht.fs"
    if not opts.out then say(prog, "give the output path prefix with --out") return EXIT.usage end
    local bits = 2048
    if opts.bits then
      bits = tonumber(opts.bits)
      if not bits or bits % 1 ~= 0 or bits < 2048 then say(prog, "--bits must be an integer of 2048 or more") return EXIT.usage end
    end
    local password
    if opts["password-env"] then
      password = env(opts["password-env"])
      if not password then say(prog, "$%s is not set", opts["password-env"]) return EXIT.usage end
    end
    local key, err = pht.generate_key(bits)
    if not key then say(prog, "cannot generate a key: %s", tostring(err)) return EXIT.internal end
    local priv, pub = opts.out .. ".pem", opts.out .. ".pub.pem"
    if not opts.force and (fs.exists(priv) or fs.exists(pub)) then
      say(prog, "%s or %s already exists (use --force to overwrite)", priv, pub)
      return EXIT.io
    end
    local ok, werr = fs.write_private(priv, key:private_pem(password), true)
    if ok then ok, werr = fs.write(pub, key:public_pem()) end
    if not ok then say(prog, "cannot write the key: %s", tostring(werr)) return EXIT.io end
    io.stdout:write(key:fingerprint(), "\n")
    key:close()
    return EXIT.ok
  end,
}

-- Top level --------------------------------------------------------------------

local function usage_text()
  local lines = {
    "Usage: pht VERB [options]   (pht VERB --help for one verb)",
    "",
    "The Personal Health Train protocol: verify, decrypt, sign and encrypt trains.",
    "",
    "Verbs:",
  }
  for _, name in ipairs(ORDER) do
    lines[#lines + 1] = string.format("  %-16s %s", name, VERBS[name].summary)
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "IMAGE is docker-archive:PATH[:NAME:TAG], oci:DIR[:TAG], or docker-daemon:NAME[:TAG]"
  lines[#lines + 1] = "(also just NAME:TAG): an image in the Docker daemon at $DOCKER_HOST."
  lines[#lines + 1] = "Stations: pht pre-run IMAGE; run the train; pht post-run IMAGE."
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Options:"
  lines[#lines + 1] = "  -h, --help   this text"
  lines[#lines + 1] = "  --version    print libpht's version"
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Exit status: 0 ok, 1 the train was rejected (the message names the step),"
  lines[#lines + 1] = "2 usage error, 3 an image, key or file could not be read or written, 70 internal error."
  return table.concat(lines, "\n") .. "\n"
end

function M.main(args, host)
  args = args or {}
  local verb = args[1]
  if verb == nil then
    stderr(usage_text())
    return EXIT.usage
  end
  if verb == "-h" or verb == "--help" or verb == "help" then
    local topic = args[2] and VERBS[args[2]]
    io.stdout:write(topic and topic.help or usage_text())
    return EXIT.ok
  end
  if verb == "--version" or verb == "version" then
    io.stdout:write("pht (libpht) ", require("pht").version, "\n")
    return EXIT.ok
  end
  local v = VERBS[verb]
  if not v then
    say("pht", "unknown verb %s (see pht --help)", verb)
    return EXIT.usage
  end
  local prog = "pht " .. verb
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  local opts, pos = parse(v, rest)
  if not opts then
    say(prog, "%s (see %s --help)", pos, prog)
    return EXIT.usage
  end
  if opts.help then
    io.stdout:write(v.help)
    return EXIT.ok
  end
  local ok, code = xpcall(function() return v.run(host, prog, opts, pos) end, debug.traceback)
  if not ok then
    say(prog, "internal error: %s", tostring(code))
    return EXIT.internal
  end
  return code
end

M.VERBS = VERBS
return M
