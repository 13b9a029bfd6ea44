-- pht keygen --out NAME: make an RSA key pair.
local options = require "pht.cli.options"
local runner = require "pht.cli.runner"

local say, EXIT = runner.say, runner.EXIT

return options.verb {
  name = "keygen",
  summary = "make an RSA key pair",
  usage = "--out NAME [--bits N] [--password-env VAR] [--force] [--json]",
  args = {},
  description = [[
Make an RSA key pair: NAME.pem (PKCS#8 private key, mode 0600, encrypted with
AES-256-CBC when --password-env names a set variable) and NAME.pub.pem (SPKI
public key). Prints the public key's fingerprint (SHA-256 of its DER).]],
  options = {
    { name = "out", arg = "NAME", help = "path prefix of the two files" },
    { name = "bits", arg = "N", default = "2048", help = "key size, at least 2048" },
    { name = "password-env", arg = "VAR", help = "encrypt the private key with the password in $VAR" },
    { name = "force", flag = true, help = "overwrite existing files" },
    { name = "json", flag = true,
      help = "print one JSON object on stdout: the files, the fingerprint, the exit code" },
  },
  exit_status = "0 written, 2 usage error, 3 the files could not be written.",
  run = function(host, prog, opts)
    local pht = require "pht"
    local fs = require "pht.fs"
    if not opts.out then say(prog, "give the output path prefix with --out") return EXIT.usage end
    local bits = tonumber(opts.bits)
    if not bits or bits % 1 ~= 0 or bits < 2048 then say(prog, "--bits must be an integer of 2048 or more") return EXIT.usage end
    local password
    if opts["password-env"] then
      password = runner.env(opts["password-env"])
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
    if runner.report then
      runner.report.extra = { fingerprint = key:fingerprint(), private_key = priv, public_key = pub }
    else
      io.stdout:write(key:fingerprint(), "\n")
    end
    key:close()
    return EXIT.ok
  end,
}
