-- pht pre-run IMAGE: verify a train and decrypt it for this station
-- (scripts/pre_run.lua).
local options = require "pht.cli.options"
local runner = require "pht.cli.runner"

return options.verb {
  name = "pre-run",
  summary = "verify a train and decrypt it for this station",
  usage = "IMAGE [options]",
  args = { "IMAGE" },
  image = true,
  description = [[
Verify the train in IMAGE for this station (doc/protocol.md §7 and libpht's
stricter checks) and write its decrypted files back into the image, in a new
layer marked as plaintext. Nothing is written unless every check passed.
After pre-run the image holds plaintext: it must not leave the station.]],
  options = {
    options.group "station",
    options.group "master",
    { name = "output", arg = "IMAGE", help = "write the result there instead of over IMAGE" },
    options.group "registry",
    options.group "workflow",
  },
  exit_status = "0 verified and decrypted, 1 rejected (the message names the step), 2 usage error, "
    .. "3 an image or key could not be read or written, 70 internal error.",
  run = function(host, prog, opts, pos)
    local o, err = runner.station_options(opts, pos[1])
    if not o then runner.say(prog, "%s", err) return runner.EXIT.usage end
    return runner.run_station(prog, opts, o, "pre_run",
      { what = "verified the train and decrypted it", note = "; it now holds plaintext" })
  end,
}
