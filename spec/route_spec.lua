-- A route in which libpht does every pre-run and post-run, from the
-- reference's built train (stage 0) to the creator. The trains it writes are
-- checked independently of the scripts: layers read with tar, values
-- recomputed with the pht primitives (and the openssl CLI for a signature)
-- against doc/protocol.md and the reference's expected.json.
local helpers = require "helpers"
local pht = require "pht"
local support = require "support"
local S = require "wf_support"

local q = helpers.q

-- The /opt a post-run wrote: the top layer of the image, extracted by tar.
local function top_opt(archive)
  local layers = S.layers(archive)
  local dir = S.untar(layers[#layers].path)
  return dir .. "/opt", layers
end

local function config_of(opt)
  return S.decode(helpers.read(opt .. "/train_config.json"))
end

local function stop_by_index(cfg, i)
  for _, s in ipairs(cfg.route) do if s.index == i then return s end end
end

local function creator_symkey(opt)
  local user = assert(pht.load_private_key_file(S.key("user")))
  return assert(user:unwrap(helpers.read(opt .. "/user_sym_key.key")))
end

-- Regular files under dir in Docker's walk order (find lists them; pht.walk_sort
-- orders them), without the layer's whiteout markers.
local function files_under(dir)
  local list = {}
  for line in helpers.run("cd " .. q(dir) .. " && find . -type f ! -name '.wh.*' | sed 's|^\\./||'"):gmatch("[^\n]+") do
    list[#list + 1] = line
  end
  return pht.walk_sort(list)
end

-- Plaintext found in the layers of an image after `visits` visits: every file
-- of every layer is compared with each plaintext, and each layer's bytes are
-- searched for every plaintext of 7 bytes or more. Returns a list of hits.
local function plaintext_hits(archive, visits)
  local expected = S.expected()
  local symkey = S.symkey(select(2, S.copy_stage(0)), 0, "station_1")
  local opt0 = S.untar(helpers.vectors .. "/stage0-built.opt.tar") .. "/opt/pht_train"
  local secrets = {
    expected.entrypoint,
    assert(symkey:decrypt(helpers.read(opt0 .. "/analysis.r"))),
    assert(symkey:decrypt(helpers.read(opt0 .. "/query.json"))),
  }
  for _, content in pairs(S.results_after(visits)) do secrets[#secrets + 1] = content end
  local hits = {}
  for i, l in ipairs(S.layers(archive)) do
    local bytes = helpers.read(l.path)
    for k, secret in ipairs(secrets) do
      if #secret >= 7 and bytes:find(secret, 1, true) then
        hits[#hits + 1] = "layer " .. i .. " holds plaintext #" .. k
      end
    end
    local dir = S.untar(l.path)
    for line in helpers.run("cd " .. q(dir) .. " && find . -type f"):gmatch("[^\n]+") do
      local content = helpers.read(dir .. "/" .. line)
      for _, secret in ipairs(secrets) do
        if content == secret then hits[#hits + 1] = "layer " .. i .. ": " .. line .. " is plaintext" end
      end
    end
  end
  return hits
end

describe("a route in which libpht does pre-run and post-run", function()
  local expected = S.expected()
  local archive, ref
  local stage = {} -- stage[n] = copy of the archive after station n's post-run

  setup(function()
    archive, ref = S.copy_stage(0)
    for n = 1, 3 do
      local code, _, err = S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(n))
      assert(code == 0, err)
      S.run_reference_train(ref, n)
      code, _, err = S.pht("post-run -q " .. q(ref) .. " " .. S.station_args(n))
      assert(code == 0, err)
      stage[n] = helpers.tmpdir() .. "/stage" .. n .. ".tar"
      helpers.run("cp " .. q(archive) .. " " .. q(stage[n]))
    end
  end)

  for n = 1, 3 do
    describe("after station_" .. n .. "'s post-run", function()
      it("result_hash and the chain digest equal the reference's for the same results", function()
        local cfg = config_of(top_opt(stage[n]))
        assert.equal(expected.stations[n].result_hash, cfg.result_hash)
        assert.equal(expected.stations[n].chain_digest, stop_by_index(cfg, n - 1).signature.digest)
      end)

      it("e_d recomputed from the decrypted results equals result_hash", function()
        local opt = top_opt(stage[n])
        local cfg = config_of(opt)
        local symkey = creator_symkey(opt)
        local h = pht.hasher()
        for _, p in ipairs(files_under(opt .. "/pht_results")) do
          local plain = assert(symkey:decrypt(helpers.read(opt .. "/pht_results/" .. p)))
          assert.equal(S.results_after(n)[p], plain, p)
          h:update(plain)
        end
        h:update(assert(pht.unhex(cfg.session_id)))
        assert.equal(cfg.result_hash, pht.hex(h:digest()))
      end)

      it("e_h recomputed from the decrypted immutable files equals hash", function()
        local opt = top_opt(stage[n])
        local cfg = config_of(opt)
        local symkey = creator_symkey(opt)
        local parts = { tostring(cfg.creator.id) }
        for _, name in ipairs(cfg.file_list) do
          parts[#parts + 1] = assert(symkey:decrypt(helpers.read(opt .. "/pht_train/" .. name:gsub("^%./", ""))))
        end
        parts[#parts + 1] = assert(pht.unhex(cfg.session_id))
        parts[#parts + 1] = assert(symkey:decrypt(helpers.read(opt .. "/pht_train/query.json")))
        assert.equal(expected.hash, pht.hex(pht.sha512(table.concat(parts))))
        assert.equal(expected.hash, cfg.hash)
      end)

      it("every chain digest is SHA-512 of the earlier digests and that stop's e_d, and every chain signature verifies", function()
        local cfg = config_of(top_opt(stage[n]))
        local prefix = assert(pht.unhex(cfg.session_id))
        local earlier = {}
        for k = 1, n do
          local s = stop_by_index(cfg, k - 1)
          local digest = assert(pht.unhex(s.signature.digest))
          local e_d = assert(pht.unhex(expected.stations[k].result_hash))
          assert.equal(pht.sha512((k == 1 and prefix or table.concat(earlier)) .. e_d), digest)
          earlier[#earlier + 1] = digest
          local pub = assert(pht.load_public_key(helpers.read(S.key("station_" .. k):gsub("%.pem$", ".pub.pem"))))
          assert.is_true(pub:verify_digest(digest, assert(pht.unhex(s.signature.signature))))
        end
        for k = n + 1, 3 do
          local sig = stop_by_index(cfg, k - 1).signature
          assert.is_true(sig == nil or sig == S.null)
        end
      end)

      it("result_signature verifies with station_" .. n .. "'s key under the openssl CLI (PSS, SHA-512, prehashed)", function()
        local cfg = config_of(top_opt(stage[n]))
        local dir = helpers.tmpdir()
        helpers.write(dir .. "/digest", assert(pht.unhex(cfg.result_hash)))
        helpers.write(dir .. "/sig", assert(pht.unhex(cfg.result_signature)))
        local out = helpers.run("openssl pkeyutl -verify -pubin -inkey "
          .. q(helpers.vectors .. "/keys/station_" .. n .. ".pub.pem") .. " -in " .. q(dir .. "/digest")
          .. " -sigfile " .. q(dir .. "/sig") .. " -pkeyopt digest:sha512 -pkeyopt rsa_padding_mode:pss"
          .. " -pkeyopt rsa_pss_saltlen:auto")
        assert.matches("Signature Verified Successfully", out)
      end)

      it("the new key is wrapped for every stop and the creator, and user_sym_key.key is the creator's copy", function()
        local opt = top_opt(stage[n])
        local cfg = config_of(opt)
        assert.equal(cfg.creator.encrypted_key, pht.hex(helpers.read(opt .. "/user_sym_key.key")))
        local probe = helpers.read(opt .. "/pht_results/count.txt")
        local want = assert(creator_symkey(opt):decrypt(probe))
        for k = 1, 3 do
          local key = assert(pht.load_private_key_file(S.key("station_" .. k)))
          local symkey = assert(key:unwrap(assert(pht.unhex(stop_by_index(cfg, k - 1).encrypted_key))))
          assert.equal(want, symkey:decrypt(probe))
        end
      end)

      it("every encrypted file has its own IV", function()
        local opt = top_opt(stage[n])
        local seen = {}
        for _, sub in ipairs({ "pht_train", "pht_results" }) do
          for _, p in ipairs(files_under(opt .. "/" .. sub)) do
            local iv = helpers.read(opt .. "/" .. sub .. "/" .. p):sub(1, 16)
            assert.is_nil(seen[iv], "IV reused by " .. sub .. "/" .. p)
            seen[iv] = true
          end
        end
      end)

      it("holds no layer of the pre-run or the run, and one new layer on the base the train was built on", function()
        local layers = S.layers(stage[n])
        -- each pre-run left out the layers holding /opt only, so sealed
        -- layers do not pile up from stop to stop
        local built = S.copy_stage(0)
        assert.equal(S.below_train(S.layers(built)) + 1, #layers)
        for _, l in ipairs(layers) do
          assert.not_equal("libpht pre-run", l.history.created_by)
          assert.not_equal("stand-in run of the reference entrypoint", l.history.created_by)
        end
        assert.equal("libpht post-run", layers[#layers].history.created_by)
      end)

      it("no layer contains any plaintext result or immutable file", function()
        local hits = plaintext_hits(stage[n], n)
        assert.same({}, hits)
      end)
    end)
  end

  it("the plaintext scan finds the layer pre-run writes (a control for the scan above)", function()
    local path, ref = S.copy_stage(1)
    assert.equal(0, (S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(2))))
    assert.is_true(#plaintext_hits(path, 1) > 0)
  end)

  it("the creator decrypts the train that came home to expected.json's final results", function()
    local out = helpers.tmpdir() .. "/results"
    local code, _, err = S.pht("decrypt-results -q " .. q("docker-archive:" .. stage[3]) .. " --key "
      .. q(S.key("user")) .. " --out " .. q(out))
    assert.equal(0, code, err)
    local got = {}
    for _, p in ipairs(files_under(out)) do got["pht_results/" .. p] = helpers.read(out .. "/" .. p) end
    assert.same(expected.final_results_plaintext, got)
  end)
end)

describe("a route with a real container run", function()
  local support = require "support"

  it("runs a built train with docker run and docker commit between pre-run and post-run", function()
    local ok, why = support.containers_available()
    if not ok then return pending(why) end
    local base = assert(support.base_image())
    local dir = helpers.tmpdir()
    for _, who in ipairs({ "creator", "s1" }) do
      assert.equal(0, (S.pht("keygen --out " .. q(dir .. "/" .. who))))
    end
    helpers.run("mkdir -p " .. q(dir .. "/files"))
    helpers.write(dir .. "/files/entrypoint.sh",
      "#!/bin/sh\nmkdir -p /opt/pht_results/out\necho 'counted 1234 rows in a container' > /opt/pht_results/out/rows.txt\n")
    local repo = support.unique_name("route")
    local ref = "docker-archive:" .. dir .. "/train.tar:" .. repo .. ":latest"
    local code, _, err = S.pht("build -q --files " .. q(dir .. "/files") .. " --station "
      .. q("s1=" .. dir .. "/s1.pub.pem") .. " --creator-id 7 --creator-key " .. q(dir .. "/creator.pem")
      .. " --base " .. q("docker-archive:" .. base) .. " --output " .. q(ref))
    assert.equal(0, code, err)
    local station = "--station s1 --key " .. q(dir .. "/s1.pem")
    code, _, err = S.pht("pre-run -q " .. q(ref) .. " " .. station)
    assert.equal(0, code, err)

    local container = repo .. "-run"
    local function docker(args) return support.docker(args) end
    local steps_ok, out = docker("load --quiet --input " .. q(dir .. "/train.tar"))
    if steps_ok then
      steps_ok, out = docker("run --name " .. q(container) .. " --network none " .. q(repo .. ":latest")
        .. " /bin/sh /opt/pht_train/entrypoint.sh")
    end
    if steps_ok then steps_ok, out = docker("commit " .. q(container) .. " " .. q(repo .. ":latest")) end
    if steps_ok then steps_ok, out = docker("save -o " .. q(dir .. "/ran.tar") .. " " .. q(repo .. ":latest")) end
    docker("rm -f " .. q(container))
    docker("rmi -f " .. q(repo .. ":latest") .. " " .. q(repo .. ":base"))
    assert(steps_ok, out)

    local ran = "docker-archive:" .. dir .. "/ran.tar:" .. repo .. ":latest"
    code, _, err = S.pht("post-run -q " .. q(ran) .. " " .. station)
    assert.equal(0, code, err)
    for i, l in ipairs(S.layers(dir .. "/ran.tar", repo .. ":latest")) do
      assert.is_nil(helpers.read(l.path):find("counted 1234 rows", 1, true), "layer " .. i .. " holds plaintext")
    end
    local outdir = dir .. "/results"
    code, _, err = S.pht("decrypt-results -q " .. q(ran) .. " --key " .. q(dir .. "/creator.pem") .. " --out " .. q(outdir))
    assert.equal(0, code, err)
    assert.equal("counted 1234 rows in a container\n", helpers.read(outdir .. "/out/rows.txt"))
  end)
end)

describe("tools/demo.sh", function()
  local function demo(args)
    return helpers.run("cd " .. q(helpers.root) .. " && PHT_BUILD_DIR=" .. q(helpers.build)
      .. " TMPDIR=" .. q(helpers.tmpdir()) .. " tools/demo.sh " .. args)
  end

  local function assert_results(out)
    assert.matches("route complete: the creator can decrypt the results", out, 1, true)
    assert.matches("--- count.txt\n3\n", out, 1, true)
    assert.matches("--- log/visits.txt\nvisit 1: sum of 1..100 is 5050\nvisit 2: sum of 1..200 is 20100\n"
      .. "visit 3: sum of 1..300 is 45150\n", out, 1, true)
    assert.matches("demo: ok", out, 1, true)
  end

  it("drives a three-station route from keygen to the creator's results with the stand-in run", function()
    local out = demo("--standin")
    assert.matches("STAND-IN RUN", out, 1, true)
    assert_results(out)
  end)

  it("runs the train in real containers when a Docker daemon answers, leaving nothing behind", function()
    local ok, why = support.containers_available()
    if not ok then pending(why) return end
    local host = assert(support.docker_host())
    local out = helpers.run("DOCKER_HOST=" .. q(host) .. " && export DOCKER_HOST && cd " .. q(helpers.root)
      .. " && PHT_BUILD_DIR=" .. q(helpers.build) .. " TMPDIR=" .. q(helpers.tmpdir()) .. " tools/demo.sh")
    assert.matches("RUN: docker load, docker create + start, docker commit, docker save", out, 1, true)
    assert.is_nil(out:find("STAND-IN", 1, true))
    assert_results(out)
    local _, images = support.docker("images -q demo/train")
    assert.equal("", images)
  end)
end)
