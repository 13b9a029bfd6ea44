-- The OpenResty station gateway (examples/openresty/) on real nginx with
-- lua-nginx-module: trains posted with curl, JSON reports read with dkjson.
-- The reference's trains verify for the station whose turn it is, with the
-- stock pre-run's step names; tampered trains fail at the named step; bad
-- bodies get 400, oversized ones 413. nginx is stopped in teardown, whatever
-- the tests did.
local helpers = require "helpers"
local nginx = require "support.nginx"
local support = require "support"
local S = require "wf_support"
local pht = require "pht"
local dkjson = require "dkjson"

local q = helpers.q

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return (helpers.run("pwd"):gsub("%s+$", "")) .. "/" .. path
end

local function key(name) return absolute(helpers.key_path(name)) end
local function pub(name) return absolute(helpers.vectors .. "/keys/" .. name .. ".pub.pem") end

local function stations(...)
  local list = {}
  for i, id in ipairs({ ... }) do list[i] = { id = id, private_key = key(id) } end
  return list
end

-- The stock pre-run's steps in order, minus the one that writes: the names a
-- report must carry.
local function stock_steps()
  local wf = assert(loadfile(helpers.root .. "/scripts/pre_run.lua"))()
  local names = {}
  for _, s in ipairs(wf.steps) do
    if not s.writes then names[#names + 1] = s.name end
  end
  return names
end

local function decode(text)
  local v, _, err = dkjson.decode(text)
  assert(v, "not JSON (" .. tostring(err) .. "): " .. tostring(text))
  return v
end

local function names_of(report)
  local names = {}
  for i, s in ipairs(report.steps) do names[i] = s.name end
  return names
end

local function step(report, name)
  for _, s in ipairs(report.steps) do
    if s.name == name then return s end
  end
  error("no step " .. name .. " in the report")
end

-- The fingerprint of a key as openssl computes it: SHA-256 of the DER SPKI.
local function openssl_fingerprint(pem)
  return (helpers.run("openssl pkey -in " .. q(pem) .. " -pubout -outform DER | sha256sum"):match("^(%x+)"))
end

-- Replace a file of the train's /opt with `plain` encrypted under symkey, in
-- a new layer: what an attacker with write access to the image would do.
local function replace_encrypted(ref, image_path, symkey, plain)
  S.tamper(ref, function(w) assert(w:add_bytes(image_path, symkey:encrypt(plain))) end)
end

-- Lines of nginx's error log from byte `from` on (default: where this nginx
-- started) that report an error (at [error] or worse) or a Lua "bad argument".
local function log_errors(gw, from)
  local f = io.open(gw.prefix .. "/logs/error.log", "rb")
  if not f then return { "no error.log" }, 0 end
  local text = f:read("*a")
  f:close()
  local bad = {}
  for line in text:sub((from or gw.log_start or 0) + 1):gmatch("[^\n]+") do
    if line:match("%[error%]") or line:match("%[crit%]") or line:match("%[alert%]") or line:match("%[emerg%]")
        or line:find("bad argument", 1, true) then
      bad[#bad + 1] = line
    end
  end
  return bad, #text
end

-- Poll /health until the worker reports "warm": true; the last decoded answer.
local function wait_warm(gw, seconds)
  local h
  for _ = 1, seconds * 10 do
    local status, text = gw:get("/health")
    if status == 200 then
      h = decode(text)
      if h.warm == true then return h end
    end
    helpers.sh("sleep 0.1")
  end
  return h
end

describe("the OpenResty gateway", function()
  local gw, why

  setup(function()
    local ok, reason = nginx.available()
    if not ok then why = reason return end
    gw, why = nginx.start({
      stations = stations("station_1", "station_2", "station_3"),
      default_station = "station_1",
      max_body = "8m",
    })
    assert(gw, why)
  end)

  teardown(function()
    if gw then gw:stop() end
  end)

  -- Post a train; returns status, decoded JSON, raw text.
  local function post(path, file)
    local status, text = gw:post(path, file)
    return status, decode(text), text
  end

  -- A verification that passes: every step ok or skipped, nothing written.
  local function assert_verified(status, report, text, station)
    assert.equal(200, status, text)
    assert.is_true(report.verified, text)
    assert.equal(station, report.station)
    assert.is_nil(report.failed_step)
    assert.same(stock_steps(), names_of(report))
    for _, s in ipairs(report.steps) do
      assert.is_true(s.status == "ok" or s.status == "skipped", s.name .. ": " .. tostring(s.status))
      assert.is_true(s.ok, s.name)
    end
    assert.same({ "write_image" }, report.not_written)
    assert.is_true(step(report, "open_image").bytes > 0, text)
  end

  -- A verification that fails at `name` with a message matching `reason`;
  -- the steps after it did not run.
  local function assert_refused(status, report, text, name, reason)
    assert.equal(422, status, text)
    assert.is_false(report.verified)
    assert.equal(name, report.failed_step)
    assert.same(stock_steps(), names_of(report))
    local failed = step(report, name)
    assert.equal("failed", failed.status)
    assert.is_false(failed.ok)
    assert.matches(reason, failed.message)
    local after = false
    for _, s in ipairs(report.steps) do
      if after then assert.equal("not_run", s.status, s.name) end
      if s.name == name then after = true end
    end
    assert.matches("pre-run failed at step " .. name, report.error, 1, true)
  end

  describe("start and reload", function()
    it("logs no error and no bad argument while its worker starts", function()
      if not gw then return pending(why) end
      wait_warm(gw, 10)
      assert.are.same({}, (log_errors(gw)))
    end)

    it("reports warm in /health a short while after start", function()
      if not gw then return pending(why) end
      local h = wait_warm(gw, 10)
      assert.is_true(h and h.warm, "GET /health is still cold 10 s after start:\n" .. gw:log_tail(40))
    end)

    it("reloads on HUP with no error logged, and its new worker turns warm", function()
      if not gw then return pending(why) end
      local _, size = log_errors(gw)
      local old = gw:workers()
      assert.is_true(#old > 0, "no worker")
      helpers.run("kill -HUP " .. gw.pid)
      local renewed = false
      for _ = 1, 100 do
        local now = gw:workers()
        if #now > 0 and now[1] ~= old[1] and not (#now > 1) then renewed = true break end
        helpers.sh("sleep 0.1")
      end
      assert.is_true(renewed, "no new worker after HUP:\n" .. gw:log_tail(40))
      local h = wait_warm(gw, 10)
      assert.is_true(h and h.warm, "GET /health is cold 10 s after HUP:\n" .. gw:log_tail(40))
      assert.are.same({}, (log_errors(gw, size)))
    end)
  end)

  describe("GET /health", function()
    it("answers 200 with each station's key fingerprint, as openssl computes it", function()
      if not gw then return pending(why) end
      local status, text = gw:get("/health")
      assert.equal(200, status, text)
      local h = decode(text)
      assert.equal("ok", h.status)
      assert.equal(pht.version, h.libpht)
      assert.equal("station_1", h.default_station)
      assert.equal(3, #h.stations)
      for i, id in ipairs({ "station_1", "station_2", "station_3" }) do
        assert.equal(id, h.stations[i].id)
        assert.equal(openssl_fingerprint(key(id)), h.stations[i].key_fingerprint)
      end
    end)

    it("answers a POST with 405 in JSON", function()
      if not gw then return pending(why) end
      local status, text = gw:post("/health")
      assert.equal(405, status)
      assert.matches("use GET", decode(text).error)
    end)
  end)

  describe("POST /trains/verify", function()
    for n = 0, 2 do
      local station = "station_" .. (n + 1)
      it("verifies reference stage " .. n .. " for " .. station .. ", whose turn it is", function()
        if not gw then return pending(why) end
        local file = helpers.vectors .. "/" .. S.stages[n]
        local before = helpers.sha256_file(file)
        local status, report, text = post("/trains/verify?station=" .. station, file)
        assert_verified(status, report, text, station)
        assert.equal(before, helpers.sha256_file(file))
      end)
    end

    it("uses the default station when the request names none", function()
      if not gw then return pending(why) end
      local status, report, text = post("/trains/verify", helpers.vectors .. "/" .. S.stages[0])
      assert_verified(status, report, text, "station_1")
    end)

    it("refuses a stage for a station whose turn it is not, at check_turn", function()
      if not gw then return pending(why) end
      local status, report, text = post("/trains/verify?station=station_3", helpers.vectors .. "/" .. S.stages[1])
      assert_refused(status, report, text, "check_turn", "it is station station_2's turn")
    end)

    it("refuses a train whose route is complete, at check_turn", function()
      if not gw then return pending(why) end
      local status, report, text = post("/trains/verify?station=station_3", helpers.vectors .. "/" .. S.stages[3])
      assert_refused(status, report, text, "check_turn", "every stop has signed")
    end)

    it("refuses a changed immutable file, at verify_immutable_hash", function()
      if not gw then return pending(why) end
      local path, ref = S.copy_stage(0)
      replace_encrypted(ref, "/opt/pht_train/entrypoint.sh", S.symkey(ref, 0, "station_1"),
        "#!/bin/sh\ncat /etc/shadow\n")
      local before = helpers.sha256_file(path)
      local status, report, text = post("/trains/verify?station=station_1", path)
      assert_refused(status, report, text, "verify_immutable_hash", "immutable files have changed")
      assert.equal(before, helpers.sha256_file(path))
    end)

    it("refuses a file slipped into /opt/pht_train, at check_immutable_files", function()
      if not gw then return pending(why) end
      local path, ref = S.copy_stage(0)
      replace_encrypted(ref, "/opt/pht_train/extra.sh", S.symkey(ref, 0, "station_1"), "rm -rf /\n")
      local status, report, text = post("/trains/verify?station=station_1", path)
      assert_refused(status, report, text, "check_immutable_files", "extra.sh is not in file_list")
    end)

    it("refuses changed results, at verify_result_hash", function()
      if not gw then return pending(why) end
      local path, ref = S.copy_stage(1)
      replace_encrypted(ref, "/opt/pht_results/count.txt", S.symkey(ref, 1, "station_2"), "42\n")
      local status, report, text = post("/trains/verify?station=station_2", path)
      assert_refused(status, report, text, "verify_result_hash", "results have changed")
    end)

    it("refuses a forged creator signature, at verify_creator_signature", function()
      if not gw then return pending(why) end
      local path, ref = S.copy_stage(0)
      local user = assert(pht.load_private_key_file(key("user")))
      S.tamper_config(ref, function(c) c.signature = pht.hex(user:sign("something else")) end)
      local status, report, text = post("/trains/verify?station=station_1", path)
      assert_refused(status, report, text, "verify_creator_signature", "does not verify")
    end)

    it("refuses a train that pre-run already decrypted, at check_not_decrypted", function()
      if not gw then return pending(why) end
      local path, ref = S.copy_stage(0)
      local code, _, err = S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(1))
      assert.equal(0, code, err)
      local status, report, text = post("/trains/verify?station=station_1", path)
      assert_refused(status, report, text, "check_not_decrypted", "already decrypted")
    end)

    it("leaves no plaintext in its temporary directory", function()
      if not gw then return pending(why) end
      local status, report, text = post("/trains/verify?station=station_2", helpers.vectors .. "/" .. S.stages[1])
      assert_verified(status, report, text, "station_2")
      assert.equal("", helpers.run("ls -A " .. q(gw.prefix .. "/tmp")))
    end)
  end)

  describe("POST /trains/verify with trains libpht made", function()
    local base_ok, dir, train_path

    -- pht build: a new train for station_1 -> station_2 -> station_3.
    local function build()
      if train_path then return train_path end
      local base = support.base_image()
      if not base then return nil end
      dir = helpers.tmpdir()
      helpers.write(dir .. "/entrypoint.sh", "#!/bin/sh\necho gateway > /opt/pht_results/out.txt\n")
      helpers.write(dir .. "/model.bin", pht.random(4096))
      helpers.write(dir .. "/query.json", '{"cohort":"all"}\n')
      local out = dir .. "/train.tar"
      local code, _, err = S.pht("build -q --file entrypoint.sh=" .. q(dir .. "/entrypoint.sh")
        .. " --file model.bin=" .. q(dir .. "/model.bin") .. " --query " .. q(dir .. "/query.json")
        .. " --station station_1=" .. q(pub("station_1")) .. " --station station_2=" .. q(pub("station_2"))
        .. " --station station_3=" .. q(pub("station_3")) .. " --creator-id gateway-spec --creator-key "
        .. q(key("user")) .. " --builder-key " .. q(key("builder")) .. " --base " .. q("docker-archive:" .. base)
        .. " --output " .. q("docker-archive:" .. out .. ":pht-gw/train:latest"))
      assert.equal(0, code, err)
      train_path = out
      return out
    end

    it("verifies a train pht build made for its first station", function()
      if not gw then return pending(why) end
      local path = build()
      if not path then return pending("no base image") end
      local status, report, text = post("/trains/verify?station=station_1&image=pht-gw/train:latest", path)
      assert_verified(status, report, text, "station_1")
    end)

    it("verifies the train of an archive that holds it and its base, with no ?image=", function()
      if not gw then return pending(why) end
      local path = build()
      if not path then return pending("no base image") end
      local status, report, text = post("/trains/verify?station=station_1", path)
      assert_verified(status, report, text, "station_1")
    end)

    it("asks which image to verify when the archive holds another image too", function()
      if not gw then return pending(why) end
      local path = build()
      if not path then return pending("no base image") end
      local three = helpers.tmpdir() .. "/three.tar"
      helpers.run("cp " .. q(path) .. " " .. q(three))
      local other = assert(pht.open_image("docker-archive:" .. helpers.vectors .. "/stage0-built.tar"))
      assert(other:retag("docker-archive:" .. three .. ":other/image:v1"))
      other:close()
      local status, report, text = post("/trains/verify?station=station_1", three)
      assert.equal(400, status, text)
      assert.equal("open_image", report.failed_step)
      assert.matches("holds 3 images: name one with ?image=NAME:TAG", report.error, 1, true)
    end)

    it("refuses that train for the second station, at check_turn", function()
      if not gw then return pending(why) end
      local path = build()
      if not path then return pending("no base image") end
      local status, report, text = post("/trains/verify?station=station_2&image=pht-gw/train:latest", path)
      assert_refused(status, report, text, "check_turn", "it is station station_1's turn")
    end)

    it("verifies it for the second station after libpht's pre-run and post-run at the first", function()
      if not gw then return pending(why) end
      local path = build()
      if not path then return pending("no base image") end
      local work = helpers.tmpdir() .. "/train.tar"
      helpers.run("cp " .. q(path) .. " " .. q(work))
      local ref = "docker-archive:" .. work .. ":pht-gw/train:latest"
      local code, _, err = S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(1))
      assert.equal(0, code, err)
      -- The train's run: what its entrypoint writes, as the layer docker commit adds.
      local results = helpers.tmpdir()
      helpers.write(results .. "/out.txt", "gateway\n")
      local img = assert(pht.open_image(ref))
      local w = assert(img:writer({}))
      assert(w:add_dir("/opt/pht_results", { opaque = true }))
      assert(w:add_file("/opt/pht_results/out.txt", results .. "/out.txt"))
      assert(w:commit(ref, { history = "train run" }))
      img:close()
      local stage1 = helpers.tmpdir() .. "/stage1.tar"
      code, _, err = S.pht("post-run -q " .. q(ref) .. " --output " .. q("docker-archive:" .. stage1
        .. ":pht-gw/train:latest") .. " " .. S.station_args(1))
      assert.equal(0, code, err)

      local status, report, text = post("/trains/verify?station=station_2&image=pht-gw/train:latest", stage1)
      assert_verified(status, report, text, "station_2")
      for _, name in ipairs({ "verify_previous_signatures", "verify_result_hash", "verify_result_signature",
        "verify_chain_digests" }) do
        assert.equal("ok", step(report, name).status, name)
      end
    end)
  end)

  describe("bad requests", function()
    local function assert_400(status, text, reason)
      assert.equal(400, status, text)
      local r = decode(text)
      assert.matches(reason, r.error)
      -- No path of the gateway leaks into the answer.
      assert.is_nil(text:find(gw.prefix, 1, true), text)
    end

    it("answers random bytes with 400: not a docker-archive image", function()
      if not gw then return pending(why) end
      local file = helpers.tmpdir() .. "/garbage.bin"
      helpers.write(file, pht.random(100000))
      local status, _, text = post("/trains/verify?station=station_1", file)
      assert_400(status, text, "the body is not a docker%-archive image")
      assert.equal("open_image", decode(text).failed_step)
    end)

    it("answers a plain tar that is no image with 400: no manifest.json", function()
      if not gw then return pending(why) end
      local status, _, text = post("/trains/verify?station=station_1", helpers.vectors .. "/stage0-built.opt.tar")
      assert_400(status, text, "not a docker%-archive %(no manifest.json%)")
    end)

    it("answers a truncated train with 400", function()
      if not gw then return pending(why) end
      local file = helpers.tmpdir() .. "/truncated.tar"
      helpers.run("head -c 1000000 " .. q(helpers.vectors .. "/" .. S.stages[1]) .. " > " .. q(file))
      local status, _, text = post("/trains/verify?station=station_2", file)
      assert_400(status, text, "the body is not a docker%-archive image")
    end)

    it("answers an empty body with 400", function()
      if not gw then return pending(why) end
      local status, text = gw:post("/trains/verify?station=station_1")
      assert_400(status, text, "empty body")
    end)

    it("answers a station the gateway has no key for with 400", function()
      if not gw then return pending(why) end
      local status, _, text = post("/trains/verify?station=station_9", helpers.vectors .. "/" .. S.stages[0])
      assert_400(status, text, "station station_9 is not configured on this gateway")
    end)

    it("answers an ?image= that is not NAME:TAG with 400", function()
      if not gw then return pending(why) end
      local status, _, text = post("/trains/verify?station=station_1&image=..%2Fx", helpers.vectors .. "/" .. S.stages[0])
      assert_400(status, text, "%?image= must be NAME:TAG")
    end)

    it("answers a body over client_max_body_size with 413 in JSON", function()
      if not gw then return pending(why) end
      local file = helpers.tmpdir() .. "/big.tar"
      helpers.run("head -c 9000000 /dev/zero > " .. q(file))
      local status, _, text = post("/trains/verify?station=station_1", file)
      assert.equal(413, status, text)
      assert.matches("larger than this gateway accepts %(client_max_body_size 8m%)", decode(text).error)
    end)

    it("answers a chunked body that grows over the cap with 413 in JSON", function()
      if not gw then return pending(why) end
      local file = helpers.tmpdir() .. "/big.tar"
      helpers.run("head -c 9000000 /dev/zero > " .. q(file))
      local status, text = gw:post("/trains/verify?station=station_1", file, "-H 'Transfer-Encoding: chunked'")
      assert.equal(413, status, text)
      assert.matches("larger than this gateway accepts", decode(text).error)
    end)

    it("answers GET on /trains/verify with 405", function()
      if not gw then return pending(why) end
      local status, text, headers = gw:get("/trains/verify")
      assert.equal(405, status)
      assert.matches("POST the train", decode(text).error)
      assert.matches("Allow: POST", headers)
    end)

    it("answers an unknown path with 404 in JSON", function()
      if not gw then return pending(why) end
      local status, text = gw:get("/trains")
      assert.equal(404, status)
      assert.matches("no such endpoint", decode(text).error)
    end)
  end)

  describe("POST /trains/inspect", function()
    it("reports the route, whose turn it is and what verifies for the station", function()
      if not gw then return pending(why) end
      local status, r, text = post("/trains/inspect?station=station_2", helpers.vectors .. "/" .. S.stages[1])
      assert.equal(200, status, text)
      assert.equal("station_2", r.station)
      assert.equal("station_2", r.train.next.station)
      assert.equal(3, #r.train.route)
      assert.is_true(r.train.route[1].signed)
      assert.is_false(r.train.route[2].signed)
      assert.equal(S.expected().hash, r.train.train.hash)
      assert.is_nil(r.train.image)
      assert.is_true(r.verification.verified)
      assert.same(stock_steps(), names_of(r.verification))
    end)

    it("reports a verification that fails with 200 and the failing step", function()
      if not gw then return pending(why) end
      local status, r, text = post("/trains/inspect?station=station_1", helpers.vectors .. "/" .. S.stages[1])
      assert.equal(200, status, text)
      assert.is_false(r.verification.verified)
      assert.equal("check_turn", r.verification.failed_step)
    end)

    it("answers random bytes with 400", function()
      if not gw then return pending(why) end
      local file = helpers.tmpdir() .. "/garbage.bin"
      helpers.write(file, pht.random(5000))
      local status, _, text = post("/trains/inspect?station=station_1", file)
      assert.equal(400, status, text)
      assert.matches("the body is not a train", decode(text).error)
    end)
  end)

  it("keeps its nginx running: the master from the pid file is alive", function()
    if not gw then return pending(why) end
    assert.truthy(gw.pid)
    assert.is_true(helpers.sh("kill -0 " .. gw.pid))
    assert.equal(1, #gw:workers())
  end)
end)

describe("the OpenResty gateway with a key its workers cannot load", function()
  local gw, why

  setup(function()
    local ok, reason = nginx.available()
    if not ok then why = reason return end
    local missing = helpers.tmpdir() .. "/no-such-key.pem"
    gw, why = nginx.start({ stations = { { id = "station_1", private_key = absolute(missing) } },
      unhealthy = true })
    assert(gw, why)
  end)

  teardown(function()
    if gw then gw:stop() end
  end)

  it("answers GET /health with 503, naming the station but not the key's path", function()
    if not gw then return pending(why) end
    local status, text = gw:get("/health")
    assert.equal(503, status, text)
    local h = decode(text)
    assert.equal("error", h.status)
    assert.equal("station_1", h.stations[1].id)
    assert.matches("private key cannot be loaded", h.stations[1].error)
    assert.is_nil(text:find("no-such-key", 1, true))
  end)

  it("answers a verification with 500, not 4xx, and logs the reason", function()
    if not gw then return pending(why) end
    local status, text = gw:post("/trains/verify", helpers.vectors .. "/" .. S.stages[0])
    assert.equal(500, status, text)
    local r = decode(text)
    assert.equal("load_key", r.failed_step)
    assert.is_nil(text:find("no-such-key", 1, true))
    assert.matches("no%-such%-key", gw:log_tail(50))
  end)
end)

describe("the OpenResty gateway configured with more job slots than thread-pool VMs", function()
  it("refuses to start, naming max_jobs and the pool size", function()
    local ok, reason = nginx.available()
    if not ok then return pending(reason) end
    local gw, why = nginx.start({ stations = { { id = "station_1", private_key = absolute(helpers.key_path("station_1")) } },
      max_jobs = 3, threads = 2 })
    if gw then gw:stop() end
    assert.is_nil(gw)
    assert.matches("max_jobs = 3 exceeds the thread pool's 2 Lua VMs", why, 1, true)
  end)
end)

describe("the OpenResty gateway with the station's trusted masters (masters)", function()
  local gw, why, dir, train_path, base

  setup(function()
    local ok, reason = nginx.available()
    if not ok then why = reason return end
    base = support.base_image()
    if not base then why = "no base image" return end
    gw, why = nginx.start({
      stations = stations("station_1"),
      default_station = "station_1",
      max_body = "8m",
      masters = { "docker-archive:" .. absolute(base) },
    })
    assert(gw, why)
    dir = helpers.tmpdir()
    helpers.run("chmod 0755 " .. q(dir))
    helpers.write(dir .. "/entrypoint.sh", "#!/bin/sh\necho gateway > /opt/pht_results/out.txt\n")
    train_path = dir .. "/train.tar"
    local code, _, err = S.pht("build -q --file entrypoint.sh=" .. q(dir .. "/entrypoint.sh")
      .. " --station station_1=" .. q(pub("station_1")) .. " --creator-id gateway-spec --creator-key "
      .. q(key("user")) .. " --base " .. q("docker-archive:" .. base)
      .. " --output " .. q("docker-archive:" .. train_path .. ":pht-gw/train:latest"))
    assert.equal(0, code, err)
  end)

  teardown(function()
    if gw then gw:stop() end
  end)

  it("verifies a train built on the master, check_master ok", function()
    if not gw then return pending(why) end
    local status, text = gw:post("/trains/verify?image=pht-gw/train:latest", train_path)
    local report = decode(text)
    assert.equal(200, status, text)
    assert.is_true(report.verified, text)
    assert.equal("ok", step(report, "check_master").status, text)
  end)

  it("refuses a train whose layer above the master replaces /bin/sh, at check_master (422)", function()
    if not gw then return pending(why) end
    local hostile = dir .. "/hostile.tar"
    helpers.run("cp " .. q(train_path) .. " " .. q(hostile))
    local ref = "docker-archive:" .. hostile .. ":pht-gw/train:latest"
    local img = assert(pht.open_image(ref))
    local w = assert(img:writer())
    assert(w:add_bytes("/bin/sh", "#!/bin/busybox sh\necho owned\n", { mode = 493 }))
    assert(w:commit(ref, { history = "a neighbour's layer" }))
    img:close()
    local status, text = gw:post("/trains/verify?image=pht-gw/train:latest", hostile)
    local report = decode(text)
    assert.equal(422, status, text)
    assert.equal("check_master", report.failed_step, text)
    assert.matches('"/bin/sh"', step(report, "check_master").message, 1, true)
  end)
end)
