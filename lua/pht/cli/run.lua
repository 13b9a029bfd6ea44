-- pht run IMAGE: a station's whole round in its Docker engine, pre-run, the
-- train's run, commit, post-run, and the plaintext removed
-- (scripts/run.lua).
local options = require "pht.cli.options"
local runner = require "pht.cli.runner"
local container = require "pht.container"

return options.verb {
  name = "run",
  summary = "pre-run, run the train in the Docker engine, post-run",
  usage = "IMAGE [options]",
  args = { "IMAGE" },
  image = true,
  description = [[
This station's whole round with the train in IMAGE: verify and decrypt it
(pre-run) into an image of the run's own, run the train's own command (its
image's Entrypoint and Cmd) in a container of the Docker engine at
$DOCKER_HOST, with no network unless --network says otherwise, commit the
container, then sign and encrypt the results (post-run, on REPO:base unless
--no-rebase; with --master, on the master the train was built on) into IMAGE or
--output. With --master, pre-run and post-run each refuse a train that was not
built on one of those masters or changes anything outside its /opt paths. The train's stdout and stderr go to this
command's stdout and stderr as they come.

The containers and the plaintext images the run made are removed at the end,
whether it succeeded or failed. IMAGE is written only by the last step: a train
that is rejected or exits with a status other than 0 leaves it unchanged.]],
  options = {
    options.group "station",
    options.group "master",
    { name = "output", arg = "IMAGE", help = "write the result there instead of over IMAGE" },
    { name = "rebase", flag = true,
      help = "build on the master the train keeps to (with --master), else on REPO:base (the default; as the "
        .. "reference's post-run takes it)" },
    { name = "no-rebase", flag = true,
      help = "build on the layers below pre-run's instead of on REPO:base" },
    { name = "base", arg = "IMAGE", help = "the base image, if not REPO:base beside IMAGE" },
    { name = "network", arg = "MODE", default = "none", help = "the train's network: none, bridge or host" },
    { name = "cpus", arg = "N", help = "the CPUs the train may use, e.g. 1.5" },
    { name = "memory", arg = "SIZE", help = "the memory the train may use, e.g. 512m or 2g" },
    { name = "volume", arg = "SRC:DST[:ro]", many = true,
      help = "a host path or volume for the train, as docker run -v (repeatable; not under /opt)" },
    { name = "mount", arg = "SPEC", many = true,
      help = "type=bind|volume|tmpfs,source=SRC,target=DST[,readonly], as docker run --mount "
        .. "(repeatable; not under /opt)" },
    { name = "env", short = "e", arg = "NAME[=VALUE]", many = true,
      help = "a variable for the train; NAME alone passes this process's value on (repeatable)" },
    options.group "registry",
    options.group "workflow",
  },
  exit_status = "0 the train ran and its results are sealed, 1 rejected (the message names the step), "
    .. "2 usage error, 3 an image, key or file could not be read or written, or the run's containers "
    .. "or plaintext images could not be removed, 4 the train exited with a status other than 0 "
    .. "(reported with its output), 70 internal error.",
  run = function(host, prog, opts, pos)
    local o, err = runner.station_options(opts, pos[1])
    if not o then runner.say(prog, "%s", err) return runner.EXIT.usage end
    if opts.rebase and opts["no-rebase"] then
      runner.say(prog, "--rebase and --no-rebase exclude each other")
      return runner.EXIT.usage
    end
    if opts.base and opts["no-rebase"] then
      runner.say(prog, "--base and --no-rebase exclude each other")
      return runner.EXIT.usage
    end
    o.rebase = not opts["no-rebase"]
    o.network, o.cpus, o.memory = opts.network, opts.cpus, opts.memory
    o.volumes, o.mounts, o.env = opts.volume, opts.mount, opts.env
    local ok, cerr = container.create_config("-", o)
    if not ok then runner.say(prog, "%s", cerr) return runner.EXIT.usage end
    local code, ctx = runner.run_workflow(prog, "run", opts, o)
    -- the train failed, or a workflow inside (pre-run, post-run): its step decides
    if ctx and ctx.exit_status and ctx.exit_status ~= 0 then
      code = runner.EXIT.train
    elseif ctx and ctx.inner_failure and code ~= runner.EXIT.ok then
      code = runner.exit_for(ctx.inner_failure)
    end
    if ctx and ctx.leftovers then
      runner.say(prog, "the run's plaintext is not all removed: %s", table.concat(ctx.leftovers, "; "))
      if code == runner.EXIT.ok then code = runner.EXIT.io end
    end
    if code == runner.EXIT.ok and not opts.quiet then
      local post = ctx.post
      runner.say(prog, "station %s ran the train (exit status 0) and sealed the results into %s (stop %d of %d)",
        tostring(post.stop.station), tostring(ctx.written), post.pos, #post.stops)
    end
    return code
  end,
}
