-- pht post-run IMAGE: sign, encrypt and seal the results after the train
-- ran (scripts/post_run.lua).
local options = require "pht.cli.options"
local runner = require "pht.cli.runner"

return options.verb {
  name = "post-run",
  summary = "sign, encrypt and seal the results after the train ran",
  usage = "IMAGE [options]",
  args = { "IMAGE" },
  image = true,
  description = [[
Hash and sign the results the train left in IMAGE, add this station's link to
the route's signature chain, encrypt the results and the train's files under a
fresh key for every stop and the creator (doc/protocol.md §8), and write the train
back with no plaintext in any layer: the new /opt goes on the layers below the
one pre-run wrote, or with --rebase on the master the train was built on (with
--master), else on REPO:base.]],
  options = {
    options.group "station",
    options.group "master",
    { name = "output", arg = "IMAGE", help = "write the result there instead of over IMAGE" },
    { name = "rebase", flag = true,
      help = "build on the master the train keeps to (with --master), else on REPO:base" },
    { name = "base", arg = "IMAGE", help = "with --rebase: the base image, if neither the master nor REPO:base" },
    options.group "registry",
    options.group "workflow",
  },
  exit_status = "0 sealed, 1 refused (the message names the step), 2 usage error, "
    .. "3 an image or key could not be read or written, 70 internal error.",
  run = function(host, prog, opts, pos)
    local o, err = runner.station_options(opts, pos[1])
    if not o then runner.say(prog, "%s", err) return runner.EXIT.usage end
    if opts.base and not opts.rebase then runner.say(prog, "--base needs --rebase") return runner.EXIT.usage end
    o.rebase = opts.rebase
    return runner.run_station(prog, opts, o, "post_run", { what = "signed and encrypted the results" })
  end,
}
