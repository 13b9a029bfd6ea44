-- pht inspect IMAGE: a train's route, whose turn it is and what verifies,
-- without any private key (pht.inspect).
local options = require "pht.cli.options"
local runner = require "pht.cli.runner"

return options.verb {
  name = "inspect",
  summary = "show a train's route, whose turn it is and what verifies",
  usage = "IMAGE [--json] [--verify-layers] [--master IMAGE]...",
  args = { "IMAGE" },
  image = true,
  description = [[
Show the train in IMAGE without any private key: its files, route, whose turn
it is, and which of its signatures verify with the public keys it carries
(the creator's and the builder's over e_h, each stop's chain signature,
result_signature, the last chain digest against result_hash), whether the
image holds plaintext from a pre-run, and with --master whether the train was
built on one of those master images with nothing outside its /opt paths
changed above it (without, that changes outside /opt were not checked).]],
  options = {
    { name = "json", flag = true,
      help = "print one JSON object instead of text (on failure: ok false, exit_code, error)" },
    { name = "verify-layers", flag = true,
      help = "check every layer's digest, not only those of the layers /opt reads" },
    options.group "master",
    options.group "registry",
    options.shared("tmpdir", { help = "where temporary files go (default: $TMPDIR or /tmp)" }),
    options.shared("timeout"),
  },
  exit_status = "0 everything that can be checked without keys verifies, 1 something does not, "
    .. "2 usage error, 3 the image cannot be read.",
  run = function(host, prog, opts, pos)
    local inspect = require "pht.inspect"
    local image, rerr = runner.image_ref(pos[1])
    if not image then runner.say(prog, "%s", rerr) return runner.EXIT.usage end
    local registry, gerr = runner.registry_options(opts)
    if not registry then runner.say(prog, "%s", gerr) return runner.EXIT.usage end
    local masters, merr = runner.master_refs(opts)
    if not masters then runner.say(prog, "%s", merr) return runner.EXIT.usage end
    local extra = require("pht.train").open_extra({ registry = registry, docker_timeout = opts.timeout })
    local report, err = inspect.image(image, opts.tmpdir, opts["verify-layers"], extra, masters)
    if not report then runner.say(prog, "%s", err) return runner.EXIT.io end
    if opts.json then
      if runner.report then runner.report.printed = true end
      io.stdout:write(assert(require("pht").json_encode(report, true)), "\n")
    else
      io.stdout:write(inspect.text(report))
    end
    return report.ok and runner.EXIT.ok or runner.EXIT.rejected
  end,
}
