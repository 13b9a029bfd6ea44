-- pht decrypt-results IMAGE: the creator reads the results of a train
-- (scripts/decrypt_results.lua).
local options = require "pht.cli.options"
local runner = require "pht.cli.runner"

return options.verb {
  name = "decrypt-results",
  summary = "the creator reads the results of a train",
  usage = "IMAGE --key PEM --out DIR [options]",
  args = { "IMAGE" },
  image = true,
  description = [[
Unwrap the results key with the creator's private key, decrypt
/opt/pht_results, check it against result_hash, result_signature and the last
stop's chain digest, and only then write the plaintext under DIR (created with
mode 0700; it must not exist yet).]],
  options = {
    options.shared("key", { help = "the creator's private key", env = false }),
    options.shared "password-env",
    { name = "out", arg = "DIR", help = "where the results go" },
    options.group "registry",
    options.group "workflow",
  },
  exit_status = "0 written, 1 the results do not verify, 2 usage error, 3 I/O error.",
  run = function(host, prog, opts, pos)
    if not opts.key then runner.say(prog, "give the creator's key with --key") return runner.EXIT.usage end
    if not opts.out then runner.say(prog, "give the output directory with --out") return runner.EXIT.usage end
    local image, err = runner.image_ref(pos[1])
    if not image then runner.say(prog, "%s", err) return runner.EXIT.usage end
    local registry, rerr = runner.registry_options(opts)
    if not registry then runner.say(prog, "%s", rerr) return runner.EXIT.usage end
    local o = { image = image, key_path = opts.key, out = opts.out, tmpdir = opts.tmpdir,
      password = runner.env(opts["password-env"]), registry = registry,
      password_hint = runner.password_hint(opts["password-env"]),
      docker_timeout = opts.timeout }
    local code, ctx = runner.run_workflow(prog, "decrypt_results", opts, o)
    if code == runner.EXIT.ok and not opts.quiet then
      runner.say(prog, "wrote %d result file(s) to %s", #ctx.results, opts.out)
    end
    return code
  end,
}
