-- The registry client (pht.open_registry) against the suite's real
-- registries: docker-registry over plain HTTP, over TLS with the test CA,
-- with htpasswd basic auth, and with token auth through
-- tools/token-service.py; network faults come from spec/support/netfault.py
-- in front of them. skopeo is the oracle for what was pushed.
local pht = require "pht"
local helpers = require "helpers"
local support = require "support"
local netfault = require "support.netfault"

local q = helpers.q
local ZERO = "sha256:" .. string.rep("0", 64)

-- Every message the client returned, checked for secrets by the last spec.
local messages = {}
local secrets = {}

local function keep(...)
  local msg = select(2, ...)
  if type(msg) == "string" then messages[#messages + 1] = msg end
  return ...
end

local function secret(s)
  secrets[#secrets + 1] = s
  return s
end

-- A registry of the suite, or pending (failing when the run requires it).
local function service(kind)
  local svc, why
  if kind == "plain" then
    local addr
    addr, why = support.registry()
    svc = addr and { addr = addr } or nil
  else
    svc, why = support.registry_service(kind)
  end
  if svc then return svc end
  local name = kind == "plain" and "registry" or "registry-" .. kind
  if support.required(name) then error(name .. " is required but unavailable: " .. why, 2) end
  pending(why)
end

local function open(addr, opts)
  return assert(keep(pht.open_registry(addr, opts)))
end

-- The base image's OCI layout, read by hand: manifest bytes, media type,
-- digest, and the paths of its blobs.
local function base_image()
  local dir = assert(support.base_image_oci())
  local desc = pht.json_decode(helpers.read(dir .. "/index.json")).manifests[1]
  local function blob(d) return dir .. "/blobs/sha256/" .. d:sub(8) end
  local text = helpers.read(blob(desc.digest))
  local m = pht.json_decode(text)
  return { manifest = text, media_type = desc.mediaType, digest = desc.digest, config = m.config,
    layer = m.layers[1], blob = blob }
end

local function push_image(reg, repo, tag, img)
  for _, d in ipairs({ img.config, img.layer }) do
    local digest = assert(keep(reg:upload_blob(repo, img.blob(d.digest), { digest = d.digest })))
    assert.are.equal(d.digest, digest)
  end
  return assert(keep(reg:put_manifest(repo, tag, img.manifest, img.media_type)))
end

-- A blob of n random bytes in a fresh file: its path and digest.
local function random_blob(n)
  local path = helpers.tmpdir() .. "/blob"
  helpers.write(path, pht.random(n))
  return path, "sha256:" .. helpers.sha256_file(path)
end

-- A user of the token service with the given conf (password added); removed after the spec.
local function token_user(svc, conf)
  local user = "robot$" .. support.unique_name("st"):gsub("%-", "_")
  conf.password = conf.password or secret(pht.hex(pht.random(12)))
  local file = support.token_user(svc, user, conf)
  finally(function() os.remove(file) end)
  return user, conf.password
end

-- The token service's log entries for user.
local function token_requests(svc, user)
  local out = {}
  local f = io.open(svc.log, "r")
  if not f then return out end
  for line in f:lines() do
    local e = pht.json_decode(line)
    if e.user == user then out[#out + 1] = e end
  end
  f:close()
  return out
end

local function decode_events(proxy)
  local out = {}
  for _, line in ipairs(proxy:events()) do out[#out + 1] = pht.json_decode(line) end
  return out
end

-- The message names every part (registry, repository, credentials, ...).
local function mentions(msg, parts)
  for _, part in ipairs(parts) do
    assert.is_truthy(msg:find(part, 1, true), part .. " missing from: " .. tostring(msg))
  end
end

-- The base image pushed by hand to a fresh repository of the TLS registry.
local function pushed_over_tls(what)
  local svc = service("tls")
  local img = base_image()
  local reg = open(svc.addr, { cert_dir = svc.cert_dir })
  local repo = support.unique_name(what) .. "/train"
  local digest = push_image(reg, repo, "v1", img)
  return svc, img, reg, repo, digest
end

-- Two station projects on the token registry: station 1's robot pushed the
-- base image to p1/train; station 2's robot may push to p2 and, when
-- reads_p1, pull from p1. Returns the image, p1, p2 and both clients.
local function two_stations(reads_p1)
  local svc = service("token")
  local img = base_image()
  local p1, p2 = support.unique_name("station1"), support.unique_name("station2")
  local access2 = { [p2 .. "/*"] = { "pull", "push" } }
  if reads_p1 then access2[p1 .. "/*"] = { "pull" } end
  local u1, pw1 = token_user(svc, { access = { [p1 .. "/*"] = { "pull", "push" } } })
  local u2, pw2 = token_user(svc, { access = access2 })
  local s1 = open(svc.addr, { cert_dir = svc.cert_dir, creds = u1 .. ":" .. pw1 })
  local s2 = open(svc.addr, { cert_dir = svc.cert_dir, creds = u2 .. ":" .. pw2 })
  push_image(s1, p1 .. "/train", "v1", img)
  return svc, img, p1, p2, s1, s2
end

describe("pht.registry", function()
  it("pushes a hand-made image over TLS that skopeo then reads back byte for byte", function()
    local svc, img, reg, repo, pushed = pushed_over_tls("push")
    assert.are.equal(img.digest, pushed)
    local ref = q("docker://" .. svc.addr .. "/" .. repo .. ":v1")
    local info = pht.json_decode(helpers.run("skopeo inspect --cert-dir " .. q(svc.cert_dir) .. " "
      .. ref .. " 2>/dev/null"))
    assert.are.equal(img.digest, info.Digest)
    local raw = helpers.run("skopeo inspect --raw --cert-dir " .. q(svc.cert_dir) .. " " .. ref
      .. " 2>/dev/null")
    assert.are.equal(img.manifest, raw)

    local data, media_type, digest = keep(reg:get_manifest(repo, "v1"))
    assert.are.equal(img.manifest, data)
    assert.are.equal(img.media_type, media_type)
    assert.are.equal(img.digest, digest)
    assert.are.equal(img.manifest, (keep(reg:get_manifest(repo, img.digest))))
    local hd, hmt, hsize = keep(reg:head_manifest(repo, "v1"))
    assert.are.same({ img.digest, img.media_type, #img.manifest }, { hd, hmt, hsize })
    local out = helpers.tmpdir() .. "/layer"
    assert.is_true(keep(reg:get_blob(repo, img.layer.digest, out, img.layer.size)))
    assert.are.equal(img.layer.digest, "sha256:" .. helpers.sha256_file(out))
  end)

  it("tells which blobs the registry has, with their size, so a push can skip them", function()
    local svc, img, reg, repo = pushed_over_tls("skip")
    local has, size = keep(reg:blob_exists(repo, img.layer.digest))
    assert.are.same({ true, img.layer.size }, { has, size })
    assert.are.same({ false }, { keep(reg:blob_exists(repo, ZERO)) })
    local _, msg, code = keep(reg:head_manifest(repo, "no-such-tag"))
    assert.are.equal("ENOTFOUND", code)
    assert.is_truthy(msg:find(svc.addr, 1, true) and msg:find(repo, 1, true), msg)
  end)

  it("refuses an endpoint without TLS verification it was not told to skip", function()
    local svc = service("tls")
    local reg = open(svc.addr, { anonymous = true })
    local ok, msg, code = keep(reg:ping())
    assert.is_nil(ok)
    assert.are.equal("EHTTP", code)
    assert.is_truthy(msg:find(svc.addr, 1, true), msg)
    assert.is_true(open(svc.addr, { tls_verify = false }):ping())
    local _, bad = keep(pht.open_registry("http://" .. svc.addr))
    assert.is_truthy(bad:find("tls_verify", 1, true), bad)
  end)

  it("mounts a blob from one station's project into the next one's (201 in the registry log)", function()
    local svc, img, p1, p2, s1, s2 = two_stations(true)
    assert.are.same({ false }, { keep(s2:blob_exists(p2 .. "/train", img.layer.digest)) })
    assert.is_true(keep(s2:mount_blob(p2 .. "/train", img.layer.digest, p1 .. "/train")))
    assert.is_true((keep(s2:blob_exists(p2 .. "/train", img.layer.digest))))
    local log = helpers.read(svc.log:gsub("token%.log$", "registry.log"))
    local line = '"POST /v2/' .. p2 .. '/train/blobs/uploads/?mount=' .. img.layer.digest:gsub(":", "%%3A")
      .. "&from=" .. p1 .. "%2Ftrain HTTP/2.0\" 201"
    assert.is_truthy(log:find(line, 1, true), "no 201 mount in the registry log: " .. line)
    -- The upload falls back to sending the bytes where a mount is not allowed.
    local _, how = keep(s1:upload_blob(p1 .. "/other", img.blob(img.config.digest),
      { digest = img.config.digest, mount_from = p2 .. "/train" }))
    assert.are.equal("uploaded", how)
    local _, how2 = keep(s2:upload_blob(p2 .. "/other", img.blob(img.config.digest),
      { digest = img.config.digest, mount_from = p1 .. "/train" }))
    assert.are.equal("mounted", how2)
  end)

  it("does not mount from a repository the credentials may not read", function()
    local _, img, p1, p2, _, s2 = two_stations(false)
    assert.are.same({ false }, { keep(s2:mount_blob(p2 .. "/train", img.layer.digest, p1 .. "/train")) })
    assert.are.same({ false }, { keep(s2:blob_exists(p2 .. "/train", img.layer.digest)) })
  end)

  it("takes a Harbor robot account from an auth file's namespaced entry", function()
    local svc = service("token")
    local p = support.unique_name("station2")
    local user, pw = token_user(svc, { access = { [p .. "/*"] = { "pull", "push" } } })
    local file = helpers.tmpdir() .. "/auth.json"
    local b64 = helpers.run("printf %s " .. q(user .. ":" .. pw) .. " | base64 -w0")
    secret(b64)
    helpers.write(file, pht.json_encode({ auths = {
      [svc.addr .. "/" .. p] = { auth = b64 },
      [svc.addr] = { auth = "bm9ib2R5Om5vdGhpbmc=" } } }))
    local reg = open(svc.addr, { cert_dir = svc.cert_dir, auth_file = file })
    local u, source = keep(reg:credentials(p .. "/train"))
    assert.are.equal(user, u)
    assert.is_truthy(source:find(file, 1, true), source)
    local path = random_blob(1000)
    assert.is_truthy(keep(reg:upload_blob(p .. "/train", path)))
    assert.are.equal("nobody", (keep(reg:credentials("elsewhere/train"))))
  end)

  it("refuses a wrong password with the registry, repository and credential source, not the password", function()
    local svc = service("basic")
    secret(svc.password)
    local reg = open(svc.addr, { cert_dir = svc.cert_dir, creds = svc.user .. ":" .. secret("not-" .. svc.password) })
    local ok, msg, code = keep(reg:blob_exists("station_2/train", ZERO))
    assert.is_nil(ok)
    assert.are.equal("EHTTP", code)
    mentions(msg, { svc.addr, "station_2/train", "HTTP 401", svc.user, "--creds" })
    assert.is_true(keep(open(svc.addr, { cert_dir = svc.cert_dir, creds = svc.user .. ":" .. svc.password })
      :blob_exists("station_2/train", ZERO)) == false)

    local tsvc = service("token")
    local p = support.unique_name("station2")
    local user = token_user(tsvc, { access = { [p .. "/*"] = { "pull" } } })
    local file = helpers.tmpdir() .. "/auth.json"
    local wrong = secret(pht.hex(pht.random(8)))
    helpers.write(file, pht.json_encode({ auths = { [tsvc.addr] = {
      auth = secret(helpers.run("printf %s " .. q(user .. ":" .. wrong) .. " | base64 -w0")) } } }))
    local treg = open(tsvc.addr, { cert_dir = tsvc.cert_dir, auth_file = file })
    _, msg = keep(treg:get_manifest(p .. "/train", "v1"))
    mentions(msg, { tsvc.addr, p .. "/train", "token service", "HTTP 401", user, file })
  end)

  it("fetches another token when the registry refuses an expired one", function()
    local svc = service("token")
    local p = support.unique_name("station2")
    local user, pw = token_user(svc, { expired_first = 1, access = { [p .. "/*"] = { "pull", "push" } } })
    local reg = open(svc.addr, { cert_dir = svc.cert_dir, creds = user .. ":" .. pw })
    assert.are.same({ false }, { keep(reg:blob_exists(p .. "/train", ZERO)) })
    local reqs = token_requests(svc, user)
    assert.are.equal(2, #reqs)
    assert.is_true(reqs[1].expired)
    assert.is_false(reqs[2].expired)
  end)

  it("fails clearly when every token it gets has expired", function()
    local svc = service("token")
    local p = support.unique_name("station2")
    local user, pw = token_user(svc, { expired = true, access = { [p .. "/*"] = { "pull" } } })
    local reg = open(svc.addr, { cert_dir = svc.cert_dir, creds = user .. ":" .. pw })
    local ok, msg, code = keep(reg:get_manifest(p .. "/train", "v1"))
    assert.is_nil(ok)
    assert.are.equal("EHTTP", code)
    mentions(msg, { svc.addr, p .. "/train", "not authorized", "HTTP 401", user, "--creds" })
    assert.are.equal(2, #token_requests(svc, user)) -- one refused, one more tried, no loop
  end)

  it("reuses a token while it is valid and fetches a new one once it expired", function()
    local svc = service("token")
    local p = support.unique_name("station2")
    local user, pw = token_user(svc, { expires_in = 300, access = { [p .. "/*"] = { "pull" } } })
    local reg = open(svc.addr, { cert_dir = svc.cert_dir, creds = user .. ":" .. pw })
    for _ = 1, 3 do keep(reg:blob_exists(p .. "/train", ZERO)) end
    assert.are.equal(1, #token_requests(svc, user))
    local short, spw = token_user(svc, { expires_in = 1, access = { [p .. "/*"] = { "pull" } } })
    local sreg = open(svc.addr, { cert_dir = svc.cert_dir, creds = short .. ":" .. spw })
    keep(sreg:blob_exists(p .. "/train", ZERO))
    helpers.run("sleep 1.2")
    assert.are.same({ false }, { keep(sreg:blob_exists(p .. "/train", ZERO)) })
    assert.are.equal(2, #token_requests(svc, short))
  end)

  it("answers a revoked repository's 403 with a clear error", function()
    local svc = service("token")
    local p = support.unique_name("station3")
    local user, pw = token_user(svc, { access = { ["*"] = { "pull", "push" } }, revoked = { p .. "/*" } })
    local reg = open(svc.addr, { cert_dir = svc.cert_dir, creds = user .. ":" .. pw })
    local ok, msg, code = keep(reg:upload_blob(p .. "/train", (random_blob(100))))
    assert.is_nil(ok)
    assert.are.equal("EHTTP", code)
    mentions(msg, { svc.addr, p .. "/train", "HTTP 403", "denied", "revoked", user })
  end)

  it("refuses a manifest whose bytes do not have the digest asked for", function()
    local svc, img, reg, repo = pushed_over_tls("tamper")
    -- A manifest of its own (an annotation makes its digest unique), then changed on disk.
    local m = pht.json_decode(img.manifest)
    m.annotations = { ["org.example.id"] = repo }
    local text = pht.json_encode(m)
    local digest = assert(keep(reg:put_manifest(repo, "mine", text, img.media_type)))
    local data = svc.storage .. "/docker/registry/v2/blobs/sha256/" .. digest:sub(8, 9) .. "/"
      .. digest:sub(8) .. "/data"
    assert.are.equal(text, helpers.read(data))
    helpers.write(data, text .. " ")
    local ok, msg, code = keep(reg:get_manifest(repo, digest))
    assert.is_nil(ok)
    assert.are.equal("EVERIFY", code)
    assert.is_truthy(msg:find("refused", 1, true), msg)
    ok, msg, code = keep(reg:get_manifest(repo, "mine"))
    assert.is_nil(ok)
    assert.are.equal("EVERIFY", code)
    assert.is_truthy(msg:find("Docker-Content-Digest", 1, true), msg)
  end)

  it("refuses a manifest larger than max_manifest without keeping any of it", function()
    local svc, img, _, repo = pushed_over_tls("big")
    local small = open(svc.addr, { cert_dir = svc.cert_dir, max_manifest = #img.manifest - 1 })
    local data, msg, code = keep(small:get_manifest(repo, "v1"))
    assert.is_nil(data)
    assert.are.equal("ELIMIT", code)
    assert.is_truthy(msg:find(repo, 1, true), msg)
    local fits = open(svc.addr, { cert_dir = svc.cert_dir, max_manifest = #img.manifest })
    assert.are.equal(img.manifest, (keep(fits:get_manifest(repo, "v1"))))
  end)

  it("refuses a blob whose bytes do not match its digest and keeps nothing of it", function()
    local svc = service("tls")
    local reg = open(svc.addr, { cert_dir = svc.cert_dir })
    local repo = support.unique_name("tamper") .. "/train"
    local path, digest = random_blob(300000)
    assert(keep(reg:upload_blob(repo, path)))
    local data = svc.storage .. "/docker/registry/v2/blobs/sha256/" .. digest:sub(8, 9) .. "/"
      .. digest:sub(8) .. "/data"
    local bytes = helpers.read(data)
    helpers.write(data, bytes:sub(1, 1000) .. string.char((bytes:byte(1001) + 1) % 256) .. bytes:sub(1002))
    local dir = helpers.tmpdir()
    local ok, msg, code = keep(reg:get_blob(repo, digest, dir .. "/blob", #bytes))
    assert.is_nil(ok)
    assert.are.equal("EVERIFY", code)
    assert.is_truthy(msg:find(repo, 1, true), msg)
    assert.are.equal("", helpers.run("ls -A " .. q(dir)))
    helpers.write(dir .. "/blob", "kept")
    assert.is_nil(keep(reg:get_blob(repo, digest, dir .. "/blob")))
    assert.are.equal("kept", helpers.read(dir .. "/blob"))
  end)

  describe("over a connection that breaks", function()
    local function pushed_layer(svc)
      local img = base_image()
      local repo = support.unique_name("cut") .. "/train"
      local reg = open(svc.addr, { tls_verify = false })
      for _, d in ipairs({ img.config, img.layer }) do
        assert(keep(reg:upload_blob(repo, img.blob(d.digest), { digest = d.digest })))
      end
      return img, repo
    end

    it("resumes a blob download after the registry's connection is reset mid-blob", function()
      local svc = service("plain")
      local img, repo = pushed_layer(svc)
      local proxy = assert(netfault.start("cut", { upstream = svc.addr, after = 65536, cuts = 1 }))
      finally(function() proxy:stop() end)
      local reg = open("http://" .. proxy.addr, { tls_verify = false, retry_delay_ms = 10 })
      local out = helpers.tmpdir() .. "/layer"
      assert.is_true(keep(reg:get_blob(repo, img.layer.digest, out, img.layer.size)))
      assert.are.equal(img.layer.digest, "sha256:" .. helpers.sha256_file(out))
      local events = decode_events(proxy)
      local cuts, opened = 0, 0
      for _, e in ipairs(events) do
        if e.event == "cut" then cuts = cuts + 1 end
        if e.event == "open" then opened = opened + 1 end
      end
      assert.are.same({ 1, true }, { cuts, opened >= 2 })
    end)

    it("gives up after three broken tries with a clean error and no file", function()
      local svc = service("plain")
      local img, repo = pushed_layer(svc)
      local proxy = assert(netfault.start("cut", { upstream = svc.addr, after = 65536 }))
      finally(function() proxy:stop() end)
      local reg = open("http://" .. proxy.addr, { tls_verify = false, retry_delay_ms = 10 })
      local dir = helpers.tmpdir()
      local ok, msg, code = keep(reg:get_blob(repo, img.layer.digest, dir .. "/layer", img.layer.size))
      assert.is_nil(ok)
      assert.are.equal("EHTTP", code)
      assert.is_truthy(msg:find("3 tries", 1, true) and msg:find(repo, 1, true), msg)
      assert.are.equal("", helpers.run("ls -A " .. q(dir)))
      local cuts = 0
      for _, e in ipairs(decode_events(proxy)) do
        if e.event == "cut" then cuts = cuts + 1 end
      end
      assert.are.equal(3, cuts)
    end)

    it("starts a broken upload over and completes it", function()
      local svc = service("plain")
      local proxy = assert(netfault.start("cut", { upstream = svc.addr, after = 100000, cuts = 1,
        direction = "up" }))
      finally(function() proxy:stop() end)
      local reg = open("http://" .. proxy.addr, { tls_verify = false, retry_delay_ms = 10 })
      local repo = support.unique_name("cut") .. "/train"
      local path, digest = random_blob(400000)
      local got, how = keep(reg:upload_blob(repo, path, { digest = digest }))
      assert.are.same({ digest, "uploaded" }, { got, how })
      assert.is_true((keep(open(svc.addr, { tls_verify = false }):blob_exists(repo, digest))))
    end)
  end)

  it("follows a blob redirect to another host without the Authorization header", function()
    local svc = service("basic")
    local creds = svc.user .. ":" .. svc.password
    local repo = "station_2/" .. support.unique_name("redirect")
    local path, digest = random_blob(200000)
    assert(keep(open(svc.addr, { cert_dir = svc.cert_dir, creds = creds }):upload_blob(repo, path)))
    local proxy = assert(netfault.start("redirect", { upstream = "https://" .. svc.addr, ca = svc.ca,
      creds = creds, redirect_host = "localhost" }))
    finally(function() proxy:stop() end)
    local reg = open("http://" .. proxy.addr, { tls_verify = false, creds = creds })
    local out = helpers.tmpdir() .. "/blob"
    assert.is_true(keep(reg:get_blob(repo, digest, out)))
    assert.are.equal(digest, "sha256:" .. helpers.sha256_file(out))
    local at_registry, at_storage
    for _, e in ipairs(decode_events(proxy)) do
      if e.path:find(digest, 1, true) then
        if e.listener == "registry" then at_registry = e.authorization end
        if e.listener == "storage" then at_storage = e.authorization end
      end
    end
    assert.is_true(at_registry, "the client sent no credentials to the registry")
    assert.is_false(at_storage, "the Authorization header went to the other host")
  end)

  it("keeps passwords, tokens and auth file contents out of every message", function()
    assert.is_true(#messages > 0)
    for _, msg in ipairs(messages) do
      assert.is_nil(msg:find("eyJ", 1, true), "a JWT in: " .. msg)
      for _, s in ipairs(secrets) do
        assert.is_nil(msg:find(s, 1, true), "a secret in: " .. msg)
      end
    end
  end)
end)
