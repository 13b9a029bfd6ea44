-- The `pht` command: help, exit codes, the reference's environment, keygen,
-- inspect, build and decrypt-results, with real tools as oracles.
local helpers = require "helpers"
local pht = require "pht"
local S = require "wf_support"
local support = require "support"

local q = helpers.q
local VERBS = { "pre-run", "post-run", "run", "inspect", "build", "decrypt-results", "keygen" }

describe("pht help and usage", function()
  it("prints the verbs and the exit codes for pht --help, exit 0", function()
    local code, out = S.pht("--help")
    assert.equal(0, code)
    for _, v in ipairs(VERBS) do assert.matches(v, out, 1, true) end
    assert.matches("Exit status", out, 1, true)
  end)

  for _, v in ipairs(VERBS) do
    it("prints usage, options and exit status for pht " .. v .. " --help, exit 0", function()
      local code, out, err = S.pht(v .. " --help")
      assert.equal(0, code, err)
      assert.matches("Usage: pht " .. v, out, 1, true)
      assert.matches("Options:", out, 1, true)
      assert.matches("Exit status", out, 1, true)
    end)

    it("names every option pht " .. v .. " accepts in its --help", function()
      local _, out = S.pht(v .. " --help")
      for name in pairs(require("pht.cli").VERBS[v].options) do
        assert.matches("%-%-" .. name:gsub("%-", "%%-") .. "[%s=]", out, nil, false, "--" .. name)
      end
    end)
  end

  it("exits 2 with the usage on stderr when no verb is given", function()
    local code, out, err = S.pht("")
    assert.equal(2, code)
    assert.equal("", out)
    assert.matches("Usage: pht VERB", err, 1, true)
  end)

  it("exits 2 naming an unknown verb", function()
    local code, _, err = S.pht("frobnicate")
    assert.equal(2, code)
    assert.matches("unknown verb frobnicate", err, 1, true)
  end)

  it("exits 2 naming an unknown option", function()
    local code, _, err = S.pht("pre-run x --frob")
    assert.equal(2, code)
    assert.matches("pht pre-run: unknown option --frob (see pht pre-run --help)", err, 1, true)
  end)

  it("exits 2 when the image argument is missing", function()
    local code, _, err = S.pht("post-run --station a --key b")
    assert.equal(2, code)
    assert.matches("missing IMAGE", err, 1, true)
  end)

  it("exits 2 when an option's value is missing", function()
    local code, _, err = S.pht("pre-run img --station")
    assert.equal(2, code)
    assert.matches("option --station needs a value (ID)", err, 1, true)
  end)

  it("exits 2 without a station id in the flags or STATION_ID", function()
    local code, _, err = S.pht("pre-run docker-archive:x.tar --key k.pem")
    assert.equal(2, code)
    assert.matches("give --station or set STATION_ID", err, 1, true)
  end)

  it("exits 2 without a key in the flags or PRIVATE_KEY_PATH", function()
    local code, _, err = S.pht("pre-run docker-archive:x.tar --station s")
    assert.equal(2, code)
    assert.matches("give --key or set PRIVATE_KEY_PATH", err, 1, true)
  end)

  it("exits 2 for --base without --rebase", function()
    local code, _, err = S.pht("post-run docker-archive:x.tar --station s --key k --base docker-archive:y.tar")
    assert.equal(2, code)
    assert.matches("--base needs --rebase", err, 1, true)
  end)

  it("exits 2 for a station script that does not load, naming it", function()
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/bad.lua", "return {")
    local _, ref = S.copy_stage(0)
    local code, _, err = S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(1) .. " --script " .. q(dir .. "/bad.lua"))
    assert.equal(2, code)
    assert.matches("cannot load station script " .. dir .. "/bad.lua", err, 1, true)
  end)

  it("removes the private temporary directory when a station script fails after making it", function()
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/tmp.lua", "return function(wf, ctx)\n"
      .. "  local f = assert(io.open(" .. string.format("%q", dir .. "/made") .. ", 'w'))\n"
      .. "  f:write(ctx:tempdir()) f:close()\n"
      .. "  error('refusing on purpose')\n"
      .. "end\n")
    local _, ref = S.copy_stage(0)
    local code, _, err = S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(1) .. " --script " .. q(dir .. "/tmp.lua"))
    assert.equal(2, code)
    assert.matches("refusing on purpose", err, 1, true)
    local made = helpers.read(dir .. "/made")
    assert.truthy(made ~= "")
    assert.is_false(helpers.sh("test -e " .. q(made)))
  end)

  it("exits 3 naming open_image when the image does not exist", function()
    local code, _, err = S.pht("pre-run -q docker-archive:/nonexistent/train.tar " .. S.station_args(1))
    assert.equal(3, code)
    assert.matches("pre-run failed at step open_image: cannot open docker-archive:/nonexistent/train.tar", err, 1, true)
  end)

  it("exits 3 naming load_key when the key file does not exist", function()
    local _, ref = S.copy_stage(0)
    local code, _, err = S.pht("pre-run -q " .. q(ref) .. " --station station_1 --key /nonexistent.pem")
    assert.equal(3, code)
    assert.matches("pre-run failed at step load_key: cannot load the private key /nonexistent.pem", err, 1, true)
  end)

  it("prints libpht's version", function()
    local code, out = S.pht("--version")
    assert.equal(0, code)
    assert.equal("pht (libpht) " .. pht.version .. "\n", out)
  end)
end)

describe("pht keygen", function()
  it("writes a private key only its owner can read and a public key, and prints the fingerprint openssl computes", function()
    local dir = helpers.tmpdir()
    local code, out, err = S.pht("keygen --out " .. q(dir .. "/k"))
    assert.equal(0, code, err)
    assert.equal("600", helpers.run("stat -c %a " .. q(dir .. "/k.pem")):match("%d+"))
    helpers.run("openssl pkey -in " .. q(dir .. "/k.pem") .. " -check -noout")
    local fp = helpers.run("openssl pkey -pubin -in " .. q(dir .. "/k.pub.pem") .. " -outform DER | sha256sum"):match("^(%x+)")
    assert.equal(fp .. "\n", out)
    assert.matches("Public%-Key: %(2048 bit%)", helpers.run("openssl pkey -pubin -in " .. q(dir .. "/k.pub.pem") .. " -noout -text"))
  end)

  it("encrypts the private key with the password in --password-env, which openssl accepts", function()
    local dir = helpers.tmpdir()
    local code, _, err = S.pht("keygen --out " .. q(dir .. "/k") .. " --password-env PW", { PW = "s3cret" })
    assert.equal(0, code, err)
    assert.matches("BEGIN ENCRYPTED PRIVATE KEY", helpers.read(dir .. "/k.pem"))
    assert.is_false(helpers.sh("openssl pkey -in " .. q(dir .. "/k.pem") .. " -passin pass:wrong -noout"))
    helpers.run("openssl pkey -in " .. q(dir .. "/k.pem") .. " -passin pass:s3cret -noout")
  end)

  it("refuses to overwrite existing keys, exit 3", function()
    local dir = helpers.tmpdir()
    assert.equal(0, (S.pht("keygen --out " .. q(dir .. "/k"))))
    local before = helpers.sha256_file(dir .. "/k.pem")
    local code, _, err = S.pht("keygen --out " .. q(dir .. "/k"))
    assert.equal(3, code)
    assert.matches("already exists", err, 1, true)
    assert.equal(before, helpers.sha256_file(dir .. "/k.pem"))
  end)

  it("refuses keys under 2048 bits, exit 2", function()
    local code, _, err = S.pht("keygen --out " .. q(helpers.tmpdir() .. "/k") .. " --bits 1024")
    assert.equal(2, code)
    assert.matches("--bits must be an integer of 2048 or more", err, 1, true)
  end)
end)

describe("pht pre-run with an encrypted station key", function()
  it("reads the password from PRIVATE_KEY_PASSWORD like the reference", function()
    local dir = helpers.tmpdir()
    helpers.run("openssl pkcs8 -topk8 -v2 aes-256-cbc -in " .. q(S.key("station_1")) .. " -out "
      .. q(dir .. "/enc.pem") .. " -passout pass:pw123")
    local _, ref = S.copy_stage(0)
    local code, _, err = S.pht("pre-run -q " .. q(ref), {
      STATION_ID = "station_1", PRIVATE_KEY_PATH = dir .. "/enc.pem", PRIVATE_KEY_PASSWORD = "pw123" })
    assert.equal(0, code, err)
  end)

  it("reads it from the variable --password-env names", function()
    local dir = helpers.tmpdir()
    helpers.run("openssl pkcs8 -topk8 -v2 aes-256-cbc -in " .. q(S.key("station_1")) .. " -out "
      .. q(dir .. "/enc.pem") .. " -passout pass:pw123")
    local _, ref = S.copy_stage(0)
    local code, _, err = S.pht("pre-run -q " .. q(ref) .. " --station station_1 --key " .. q(dir .. "/enc.pem")
      .. " --password-env MY_PW", { MY_PW = "pw123" })
    assert.equal(0, code, err)
  end)

  it("fails at load_key with a wrong password, exit 3, leaving the image unchanged", function()
    local dir = helpers.tmpdir()
    helpers.run("openssl pkcs8 -topk8 -v2 aes-256-cbc -in " .. q(S.key("station_1")) .. " -out "
      .. q(dir .. "/enc.pem") .. " -passout pass:pw123")
    local path, ref = S.copy_stage(0)
    local before = helpers.sha256_file(path)
    local code, _, err = S.pht("pre-run -q " .. q(ref) .. " --station station_1 --key " .. q(dir .. "/enc.pem"),
      { PRIVATE_KEY_PASSWORD = "nope" })
    assert.equal(3, code)
    assert.matches("failed at step load_key", err, 1, true)
    assert.is_nil(err:find("nope", 1, true))
    assert.equal(before, helpers.sha256_file(path))
  end)
end)

describe("pht inspect", function()
  it("shows the route and whose turn it is for a reference train", function()
    local code, out, err = S.pht("inspect " .. q("docker-archive:" .. helpers.vectors .. "/stage1-station_1-post.tar"))
    assert.equal(0, code, err)
    assert.matches("next stop: station_2 (index 1)", out, 1, true)
    assert.matches("0  station_1", out, 1, true)
    assert.is_nil(out:find("FAIL", 1, true))
    assert.matches("master: changes outside /opt were not checked", out, 1, true)
  end)

  it("reports every check as JSON with --json", function()
    local code, out = S.pht("inspect --json " .. q("docker-archive:" .. helpers.vectors .. "/stage3-station_3-post.tar"))
    assert.equal(0, code)
    local r = assert(pht.json_decode(out))
    assert.is_true(r.ok)
    assert.is_true(r.complete)
    assert.equal(3, #r.route)
    assert.is_false(r.master.checked)
    local names = {}
    for _, c in ipairs(r.checks) do names[c.name] = c.ok end
    assert.is_true(names.creator_signature)
    assert.is_true(names.build_signature)
    assert.is_true(names.result_signature)
    assert.is_true(names.chain_digest)
    assert.is_true(names["chain_signature:station_3"])
  end)

  it("checks the digest of every layer with --verify-layers", function()
    local path, ref = S.copy_stage(1)
    S.tamper(ref, function(w) assert(w:add_bytes("/srv/outside.txt", "bytes outside /opt")) end)
    helpers.replace_bytes(path, "bytes outside /opt", "BYTES outside /opt")
    local code, out, err = S.pht("inspect --json " .. q(ref))
    assert.equal(0, code, err)
    local r = assert(pht.json_decode(out))
    assert.equal(4, r.layers)
    assert.equal(3, r.layers_verified)
    code, out, err = S.pht("inspect --verify-layers " .. q(ref))
    assert.equal(3, code, out)
    assert.matches("does not match its diff_id", err, 1, true)
  end)

  it("exits 1 and names the failing check for a train with a forged creator signature", function()
    local _, ref = S.copy_stage(0)
    local user = assert(pht.load_private_key_file(S.key("user")))
    S.tamper_config(ref, function(c) c.signature = pht.hex(user:sign("x")) end)
    local code, out = S.pht("inspect " .. q(ref))
    assert.equal(1, code)
    assert.matches("FAIL the creator's signature over e_h", out, 1, true)
  end)

  it("exits 1 and marks the stop for a chain signature that does not verify", function()
    local _, ref = S.copy_stage(3)
    S.tamper_config(ref, function(c)
      local sig = c.route[2].signature.signature
      c.route[2].signature.signature = sig:sub(1, -3) .. (sig:sub(-2) == "00" and "01" or "00")
    end)
    local code, out = S.pht("inspect " .. q(ref))
    assert.equal(1, code)
    assert.matches("FAIL station_2's chain signature", out, 1, true)
    assert.matches("station_2%s+%S+%s+key %x+%s+signed, DOES NOT VERIFY", out)
    assert.matches("ok   station_3's chain signature", out, 1, true)
  end)

  it("exits 1 naming result_signature and the chain digest when result_hash was changed", function()
    local _, ref = S.copy_stage(3)
    S.tamper_config(ref, function(c) c.result_hash = pht.hex(pht.sha512("other results")) end)
    local code, out = S.pht("inspect " .. q(ref))
    assert.equal(1, code)
    assert.matches("FAIL result_signature by station_3, the last to sign", out, 1, true)
    assert.matches("FAIL station_3's chain digest is SHA-512(earlier digests || result_hash)", out, 1, true)
  end)

  it("exits 1 and warns about an image that holds plaintext from pre-run", function()
    local _, ref = S.copy_stage(0)
    assert.equal(0, (S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(1))))
    local code, out = S.pht("inspect " .. q(ref))
    assert.equal(1, code)
    assert.matches("FAIL the image holds a layer decrypted by pre-run", out, 1, true)
  end)
end)

describe("pht decrypt-results", function()
  it("writes the reference's final results for the creator's key", function()
    local out = helpers.tmpdir() .. "/res"
    local code, _, err = S.pht("decrypt-results -q " .. q("docker-archive:" .. helpers.vectors .. "/stage3-station_3-post.tar")
      .. " --key " .. q(S.key("user")) .. " --out " .. q(out))
    assert.equal(0, code, err)
    for name, content in pairs(S.expected().final_results_plaintext) do
      assert.equal(content, helpers.read(out .. "/" .. name:gsub("^pht_results/", "")), name)
    end
    assert.equal("700", helpers.run("stat -c %a " .. q(out)):match("%d+"))
  end)

  it("leaves no half-filled output directory when the disk fills while writing", function()
    local mnt = helpers.tmpdir() .. "/small"
    local mounted, why = helpers.mount_tmpfs(mnt, "8k")
    if not mounted then return pending(why) end
    finally(function() helpers.umount(mnt) end)
    local code, _, err = S.pht("decrypt-results -q " .. q("docker-archive:" .. helpers.vectors .. "/stage3-station_3-post.tar")
      .. " --key " .. q(S.key("user")) .. " --out " .. q(mnt .. "/res") .. " --tmpdir " .. q(helpers.tmpdir()))
    assert.equal(3, code, err)
    assert.matches("failed at step write_results", err, 1, true)
    assert.matches("No space left on device", err, 1, true)
    assert.equal("", helpers.run("ls -A " .. q(mnt)))
  end)

  it("refuses a key that is not the creator's, at check_creator_key, writing nothing", function()
    local out = helpers.tmpdir() .. "/res"
    local code, _, err = S.pht("decrypt-results -q " .. q("docker-archive:" .. helpers.vectors .. "/stage3-station_3-post.tar")
      .. " --key " .. q(S.key("station_3")) .. " --out " .. q(out))
    assert.equal(1, code)
    assert.matches("failed at step check_creator_key", err, 1, true)
    assert.is_false(helpers.sh("test -e " .. q(out)))
  end)

  it("refuses changed results, at verify_result_hash, writing nothing", function()
    local _, ref = S.copy_stage(3)
    local user = assert(pht.load_private_key_file(S.key("user")))
    local img = assert(pht.open_image(ref))
    local symkey = assert(user:unwrap(assert(img:read_file("/opt/user_sym_key.key"))))
    img:close()
    S.tamper(ref, function(w) assert(w:add_bytes("/opt/pht_results/count.txt", symkey:encrypt("99\n"))) end)
    local out = helpers.tmpdir() .. "/res"
    local code, _, err = S.pht("decrypt-results -q " .. q(ref) .. " --key " .. q(S.key("user")) .. " --out " .. q(out))
    assert.equal(1, code)
    assert.matches("failed at step verify_result_hash: results have changed", err, 1, true)
    assert.is_false(helpers.sh("test -e " .. q(out)))
  end)

  it("refuses a last chain signature that does not verify, at verify_chain_digests, writing nothing", function()
    local path, ref = S.copy_stage(3)
    S.tamper_config(ref, function(cfg)
      local sig = cfg.route[3].signature.signature
      cfg.route[3].signature.signature = sig:sub(1, -3) .. (sig:sub(-2) == "00" and "01" or "00")
    end)
    local before = helpers.sha256_file(path)
    local out = helpers.tmpdir() .. "/res"
    local code, _, err = S.pht("decrypt-results -q " .. q(ref) .. " --key " .. q(S.key("user")) .. " --out " .. q(out))
    assert.equal(1, code, err)
    assert.matches("failed at step verify_chain_digests: station station_3's (index 2)", err, 1, true)
    assert.matches("signature does not verify", err, 1, true)
    assert.is_false(helpers.sh("test -e " .. q(out)))
    assert.equal(before, helpers.sha256_file(path))
  end)
end)

describe("pht build", function()
  local dir, ref, archive

  setup(function()
    local base = assert(support.base_image())
    dir = helpers.tmpdir()
    for _, who in ipairs({ "creator", "builder", "s1", "s2" }) do
      assert(S.pht("keygen --out " .. q(dir .. "/" .. who)) == 0)
    end
    helpers.run("mkdir -p " .. q(dir .. "/files/lib"))
    helpers.write(dir .. "/files/entrypoint.sh", "#!/bin/sh\necho run\n")
    helpers.write(dir .. "/files/lib/util.r", "f <- function() 1\n")
    helpers.write(dir .. "/files/a-b.r", "x <- 2\n")
    helpers.write(dir .. "/files/query.json", "{\"q\": true}\n")
    archive = dir .. "/train.tar"
    ref = "docker-archive:" .. archive .. ":pht/built:latest"
    local code, _, err = S.pht("build -q --files " .. q(dir .. "/files")
      .. " --station " .. q("s1=" .. dir .. "/s1.pub.pem") .. " --station " .. q("s2=" .. dir .. "/s2.pub.pem,padme")
      .. " --creator-id 42 --creator-key " .. q(dir .. "/creator.pem") .. " --builder-key " .. q(dir .. "/builder.pem")
      .. " --base " .. q("docker-archive:" .. base) .. " --output " .. q(ref))
    assert(code == 0, err)
  end)

  local function built_opt()
    local layers = S.layers(archive, "pht/built:latest")
    return S.untar(layers[#layers].path) .. "/opt", layers
  end

  it("tags REPO:latest on the base image's layers plus one, and the base as REPO:base", function()
    local _, layers = built_opt()
    local base_layers = S.layers(archive, "pht/built:base")
    local orig = S.layers(assert(support.base_image()), select(2, support.base_image()))
    assert.equal(#orig, #base_layers)
    assert.equal(#base_layers + 1, #layers)
  end)

  it("sets the image's command to run entrypoint.sh under /bin/sh, as skopeo reads it", function()
    local out = helpers.stdout("skopeo inspect --config " .. q(ref))
    local cfg = assert(pht.json_decode(out))
    assert.same({ "/bin/sh", "/opt/pht_train/entrypoint.sh" }, cfg.config.Cmd)
    assert.is_nil(cfg.config.Entrypoint)
  end)

  it("refuses --run naming a file the train does not have", function()
    local code, _, err = S.pht("build -q --files " .. q(dir .. "/files")
      .. " --station " .. q("s1=" .. dir .. "/s1.pub.pem")
      .. " --creator-id 42 --creator-key " .. q(dir .. "/creator.pem") .. " --run main.sh"
      .. " --base " .. q("docker-archive:" .. assert(support.base_image()))
      .. " --output " .. q("docker-archive:" .. dir .. "/other.tar:pht/other:latest"))
    assert.equal(1, code)
    assert.matches("%-%-run main.sh is not one of the train's files", err)
  end)

  it("closes the creator's and the builder's private keys when the build ends", function()
    local workflow = require "pht.workflow"
    local wf = assert(loadfile("scripts/build.lua"))()
    local ctx = workflow.context({ options = {
      files_dir = dir .. "/files", stops = { { station = "s1", key_path = dir .. "/s1.pub.pem", eco_system = "tue" } },
      creator_id = "42", creator_key = dir .. "/creator.pem", builder_key = dir .. "/builder.pem",
      base = "docker-archive:" .. assert(support.base_image()),
      output = "docker-archive:" .. dir .. "/inproc.tar:pht/inproc:latest",
    } })
    local ok, failure = wf:run(ctx)
    assert.is_true(ok, tostring(failure))
    assert.has_error(function() ctx.creator_key:fingerprint() end, "attempt to use a closed pht.key")
    assert.has_error(function() ctx.builder_key:fingerprint() end, "attempt to use a closed pht.key")
  end)

  it("refuses a station key file larger than any public key PEM, at load_keys", function()
    local big = dir .. "/big.pub.pem"
    helpers.run("head -c 1048576 /dev/zero > " .. q(big))
    local out = dir .. "/big-train.tar"
    local code, _, err = S.pht("build -q --files " .. q(dir .. "/files")
      .. " --station " .. q("s1=" .. big)
      .. " --creator-id 42 --creator-key " .. q(dir .. "/creator.pem")
      .. " --base " .. q("docker-archive:" .. assert(support.base_image()))
      .. " --output " .. q("docker-archive:" .. out .. ":pht/big:latest"))
    assert.equal(3, code, err)
    assert.matches("failed at step load_keys: cannot read station s1's public key: "
      .. big .. " is larger than 65536 bytes", err, 1, true)
    assert.is_false(helpers.sh("test -e " .. q(out)))
  end)

  it("refuses a docker-archive output without REPO:TAG, at check_output, writing nothing", function()
    local out = dir .. "/untagged.tar"
    local code, _, err = S.pht("build -q --files " .. q(dir .. "/files")
      .. " --station " .. q("s1=" .. dir .. "/s1.pub.pem")
      .. " --creator-id 42 --creator-key " .. q(dir .. "/creator.pem")
      .. " --base " .. q("docker-archive:" .. assert(support.base_image()))
      .. " --output " .. q("docker-archive:" .. out))
    assert.equal(3, code, err)
    assert.matches("failed at step check_output: the output must be docker%-archive:PATH:REPO:TAG", err)
    assert.is_false(helpers.sh("test -e " .. q(out)))
  end)

  it("writes a config whose hash is e_h of the files in walk order with query.json last", function()
    local opt = built_opt()
    local cfg = S.decode(helpers.read(opt .. "/train_config.json"))
    assert.same({ "a-b.r", "entrypoint.sh", "lib/util.r" }, cfg.file_list)
    local key = assert(pht.load_private_key_file(dir .. "/s1.pem"))
    local symkey = assert(key:unwrap(assert(pht.unhex(cfg.route[1].encrypted_key))))
    local parts = { "42" }
    for _, name in ipairs(cfg.file_list) do
      local plain = assert(symkey:decrypt(helpers.read(opt .. "/pht_train/" .. name)))
      assert.equal(helpers.read(dir .. "/files/" .. name), plain)
      parts[#parts + 1] = plain
    end
    parts[#parts + 1] = assert(pht.unhex(cfg.session_id))
    parts[#parts + 1] = helpers.read(dir .. "/files/query.json")
    assert.equal(cfg.hash, pht.hex(pht.sha512(table.concat(parts))))
    assert.equal(128, #cfg.session_id)
  end)

  it("signs e_h with the creator's key and e_h || e_h_sig with the builder's, checked by the openssl CLI", function()
    local opt = built_opt()
    local cfg = S.decode(helpers.read(opt .. "/train_config.json"))
    local t = helpers.tmpdir()
    helpers.write(t .. "/eh", assert(pht.unhex(cfg.hash)))
    helpers.write(t .. "/sig", assert(pht.unhex(cfg.signature)))
    helpers.write(t .. "/ehsig", assert(pht.unhex(cfg.hash)) .. assert(pht.unhex(cfg.signature)))
    helpers.write(t .. "/bsig", assert(pht.unhex(cfg.build.signature)))
    assert.matches("Verified OK", helpers.run("openssl dgst -sha512 -verify " .. q(dir .. "/creator.pub.pem")
      .. " -signature " .. q(t .. "/sig") .. " " .. q(t .. "/eh")))
    assert.matches("Verified OK", helpers.run("openssl dgst -sha512 -verify " .. q(dir .. "/builder.pub.pem")
      .. " -signature " .. q(t .. "/bsig") .. " " .. q(t .. "/ehsig")))
    assert.equal(helpers.read(dir .. "/creator.pub.pem"), assert(pht.unhex(cfg.creator.rsa_public_key)))
  end)

  it("wraps the key for the first stop only and leaves results, signatures and the creator's key unset", function()
    local opt = built_opt()
    local cfg = S.decode(helpers.read(opt .. "/train_config.json"))
    assert.is_string(cfg.route[1].encrypted_key)
    assert.is_true(cfg.route[2].encrypted_key == nil or cfg.route[2].encrypted_key == S.null)
    assert.equal("padme", cfg.route[2].eco_system)
    assert.is_true(cfg.result_hash == nil or cfg.result_hash == S.null)
    assert.is_true(cfg.creator.encrypted_key == nil or cfg.creator.encrypted_key == S.null)
    assert.equal("", helpers.run("cd " .. q(opt .. "/pht_results") .. " && find . -mindepth 1 ! -name '.wh.*'"))
  end)

  it("makes a train the first station's pre-run accepts", function()
    local copy = helpers.tmpdir() .. "/t.tar"
    helpers.run("cp " .. q(archive) .. " " .. q(copy))
    local code, _, err = S.pht("pre-run -q " .. q("docker-archive:" .. copy .. ":pht/built:latest")
      .. " --station s1 --key " .. q(dir .. "/s1.pem"))
    assert.equal(0, code, err)
  end)

  it("loads into Docker and lists its /opt there", function()
    local ok, why = support.docker_available()
    if not ok then return pending(why) end
    local name = support.unique_name("built")
    local copy = helpers.tmpdir() .. "/t.tar"
    helpers.run("cp " .. q(archive) .. " " .. q(copy))
    assert(support.docker("load --input " .. q(copy)))
    local cok, out = support.docker("create --name " .. q(name) .. " pht/built:latest /bin/true")
    assert(cok, out)
    local lok, listing = support.docker("export " .. q(name) .. " | tar -t | grep '^opt/pht_train/'")
    support.docker("rm " .. q(name))
    support.docker("rmi pht/built:latest pht/built:base")
    assert(lok, listing)
    assert.matches("opt/pht_train/lib/util.r", listing, 1, true)
  end)

  it("exits 2 without the creator's key", function()
    local code, _, err = S.pht("build --files x --station a=b --creator-id 1 --base docker-archive:b --output docker-archive:o:r:latest")
    assert.equal(2, code)
    assert.matches("missing --creator-key", err, 1, true)
  end)
end)

describe("pht IMAGE arguments", function()
  it("refuses an unknown transport with exit 2, naming it and the transports libpht knows", function()
    local dir = helpers.tmpdir()
    local code, _, err = S.pht("pre-run -q containers-storage:/nonexistent/train --tmpdir " .. q(dir) .. " "
      .. S.station_args(1))
    assert.equal(2, code, err)
    assert.matches('unknown transport "containers-storage"', err, 1, true)
    for _, t in ipairs(pht.transports()) do assert.matches(t.syntax, err, 1, true) end
    assert.not_matches("failed at step", err, 1, true)
  end)

  it("refuses a malformed reference of a known transport with exit 2", function()
    local code, _, err = S.pht("inspect docker-archive:")
    assert.equal(2, code, err)
    assert.matches("pht inspect: image reference \"docker-archive:\": empty PATH", err, 1, true)
  end)

  it("lists every transport libpht knows in pht --help and pht pre-run --help", function()
    for _, args in ipairs({ "--help", "pre-run --help" }) do
      local code, out = S.pht(args)
      assert.equal(0, code)
      for _, t in ipairs(pht.transports()) do assert.matches(t.syntax, out, 1, true) end
    end
  end)
end)

describe("pht.cli.help", function()
  it("returns the text --help prints, for each verb and for the command", function()
    local cli = require "pht.cli"
    for _, v in ipairs(VERBS) do
      local _, out = S.pht(v .. " --help")
      assert.equal(out, cli.help(v))
    end
    local _, out = S.pht("--help")
    assert.equal(out, cli.help())
    assert.is_nil(cli.help("frobnicate"))
  end)

  it("shows each option's default from its table", function()
    local text = require("pht.cli").help("pre-run"):gsub("%s+", " ")
    assert.matches("%-%-station ID%s+this station's id on the route %(default: %$STATION_ID%)", text)
    assert.matches("read the key's password from %$VAR %(default: PRIVATE_KEY_PASSWORD%)", text)
  end)
end)
