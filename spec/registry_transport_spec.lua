-- The docker:// image transport (core/src/image_registry.c) against the
-- suite's real registries: what pht pushes, docker pull and skopeo accept;
-- what skopeo copy and docker push wrote, pht reads; an index resolves to a
-- platform; and every refusal (wrong password, expired token, revoked
-- scope, a connection cut mid-blob, a tampered manifest or blob, a redirect
-- to another host) is clean: a message naming the registry and repository,
-- no secret in it, nothing tagged or cached. Network faults come from
-- spec/support/netfault.py in front of the registry.
local pht = require "pht"
local helpers = require "helpers"
local support = require "support"
local netfault = require "support.netfault"
local S = require "wf_support"

local q = helpers.q

local messages, secrets = {}, {}

local function keep(...)
  local msg = select(2, ...)
  if type(msg) == "string" then messages[#messages + 1] = msg end
  return ...
end

local function secret(s)
  secrets[#secrets + 1] = s
  return s
end

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

local function base_oci()
  return "oci:" .. assert(support.base_image_oci()) .. ":latest"
end

-- Open ref with registry options opts (and a fresh cache dir unless given).
local function open(ref, opts)
  opts = opts or {}
  opts.cache_dir = opts.cache_dir or (helpers.tmpdir() .. "/cache")
  return keep(pht.open_image(ref, opts))
end

-- Commit src (a reference) plus files (path -> content) to dest; true or nil, message.
local function push(src, dest, files, src_opts)
  local img = assert(open(src, src_opts))
  local w = assert(img:writer())
  for path, content in pairs(files or {}) do assert(w:add_bytes(path, content)) end
  local ok, err = keep(w:commit(dest))
  w:close()
  img:close()
  return ok, err
end

local function skopeo(args)
  return helpers.sh("skopeo " .. args .. " 2>&1")
end

-- The digest skopeo sees at ref (tls: the CA dir or false for plain http), or nil.
local function digest_of(ref, tls, creds)
  local flags = tls and (" --cert-dir " .. q(tls)) or " --tls-verify=false"
  if creds then flags = flags .. " --creds " .. q(creds) end
  local ok, out = skopeo("inspect" .. flags .. " " .. q(ref))
  if not ok then return nil, out end
  return pht.json_decode(out).Digest
end

-- The suite's private dockerd runs in a network namespace of its own
-- (tools/services.sh); make the registry at addr reachable from there under
-- the same address until the file's specs end (spec/support/nsforward.py).
local forwarders = {}

local function stop_forwarders()
  for addr, fpid in pairs(forwarders) do
    helpers.sh("grep -q nsforward.py /proc/" .. fpid .. "/cmdline 2>/dev/null && kill " .. fpid)
    forwarders[addr] = nil
  end
end

local function docker_reaches(addr)
  if forwarders[addr] then return end
  local sdir = os.getenv("PHT_SERVICES_DIR") or "/tmp/pht-services"
  local pid = (helpers.read(sdir .. "/docker/dockerd.pid") or ""):match("%d+")
  if not pid then return end
  local ns = helpers.run("readlink /proc/" .. pid .. "/ns/net 2>/dev/null || true")
  if ns == "" or ns == helpers.run("readlink /proc/self/ns/net") then return end
  local dir = helpers.tmpdir()
  local ok, out = helpers.sh("setsid python3 " .. q(helpers.root .. "/spec/support/nsforward.py")
    .. " --netns /proc/" .. pid .. "/ns/net --upstream " .. q(addr) .. " --ready " .. q(dir .. "/ready")
    .. " </dev/null >" .. q(dir .. "/log") .. " 2>&1 & echo $!")
  local fpid = assert(ok and out:match("(%d+)"), out)
  forwarders[addr] = fpid
  local _, ready = helpers.sh("for i in $(seq 200); do [ -s " .. q(dir .. "/ready") .. " ] && break; "
    .. "sleep 0.025; done; cat " .. q(dir .. "/ready") .. " 2>/dev/null")
  assert(ready and ready:find("ok", 1, true), "nsforward.py did not start: " .. helpers.read(dir .. "/log"))
end

-- Whether the suite's dockerd answers; marks the spec pending (or fails it
-- when docker is required) otherwise.
local function docker_up()
  local ok, why = support.docker_available()
  if ok then return true end
  if support.required("docker") then error("docker is required but unavailable: " .. tostring(why), 2) end
  pending(why)
  return false
end

local function mentions(msg, parts)
  for _, part in ipairs(parts) do
    assert.is_truthy(tostring(msg):find(part, 1, true), part .. " missing from: " .. tostring(msg))
  end
end

local function decode_events(proxy)
  local out = {}
  for _, line in ipairs(proxy:events()) do out[#out + 1] = pht.json_decode(line) end
  return out
end

-- Files of a directory tree, recursively ("" when empty or missing).
local function listing(dir)
  return helpers.run("find " .. q(dir) .. " -type f 2>/dev/null | sort")
end

describe("the docker:// transport", function()
  teardown(stop_forwarders)
  describe("with other tools", function()
    it("pushes an image that skopeo inspects and copies, digest-checked, and that pht reads back", function()
      local svc = service("tls")
      local ref = "docker://" .. svc.addr .. "/" .. support.unique_name("interop") .. "/train:v1"
      assert.is_true(push(base_oci(), ref, { ["/opt/pht_train/x.txt"] = "pushed by pht\n" },
        { cert_dir = svc.cert_dir }))
      local raw = assert(skopeo("inspect --raw --cert-dir " .. q(svc.cert_dir) .. " " .. q(ref)))
      local m = pht.json_decode(select(2, skopeo("inspect --raw --cert-dir " .. q(svc.cert_dir) .. " " .. q(ref))))
      assert.is_truthy(raw)
      assert.are.equal("application/vnd.docker.distribution.manifest.v2+json", m.mediaType)
      for _, l in ipairs(m.layers) do
        assert.are.equal("application/vnd.docker.image.rootfs.diff.tar.gzip", l.mediaType)
      end
      local out = helpers.tmpdir() .. "/copy"
      local ok, msg = skopeo("copy -q --src-cert-dir " .. q(svc.cert_dir) .. " " .. q(ref) .. " "
        .. q("oci:" .. out .. ":t"))
      assert.is_true(ok, msg)
      local img = assert(open(ref, { cert_dir = svc.cert_dir }))
      assert.are.equal("pushed by pht\n", img:read_file("/opt/pht_train/x.txt"))
      assert.are.equal("docker", img:transport())
      img:close()
    end)

    it("pushes an image that docker pull accepts and docker run reads", function()
      local svc = service("plain")
      if not docker_up() then return end
      docker_reaches(svc.addr)
      local name = svc.addr .. "/" .. support.unique_name("dockerpull") .. "/train:v1"
      assert.is_true(push(base_oci(), "docker://" .. name, { ["/opt/pht_train/x.txt"] = "for docker\n" },
        { tls_verify = false }))
      finally(function() support.docker("rmi -f " .. q(name)) end)
      local pulled, out = support.docker("pull -q " .. q(name))
      assert.is_true(pulled, out)
      local ran, text = support.docker("run --rm --network none " .. q(name) .. " cat /opt/pht_train/x.txt")
      assert.is_true(ran, text)
      assert.are.equal("for docker\n", text)
    end)

    it("reads an image that docker push wrote", function()
      local svc = service("plain")
      if not docker_up() then return end
      local base = assert(support.load_base_image())
      docker_reaches(svc.addr)
      local name = svc.addr .. "/" .. support.unique_name("dockerpush") .. "/base:v1"
      assert.is_true((support.docker("tag " .. q(base) .. " " .. q(name))))
      finally(function() support.docker("rmi " .. q(name)) end)
      local pushed, out = support.docker("push -q " .. q(name))
      assert.is_true(pushed, out)
      local img = assert(open("docker://" .. name, { tls_verify = false }))
      assert.is_truthy(img:stat("/bin/busybox"))
      img:close()
    end)

    it("reads what skopeo copy wrote, gzip and zstd layers alike", function()
      local svc = service("tls")
      -- the base layout, and a copy of it whose layer is zstd (made with the zstd tool)
      local dir = assert(support.base_image_oci())
      local zdir = helpers.tmpdir() .. "/zstd"
      helpers.run("cp -a " .. q(dir) .. " " .. q(zdir))
      local desc = pht.json_decode(helpers.read(zdir .. "/index.json")).manifests[1]
      local function blob(d) return zdir .. "/blobs/sha256/" .. d:sub(8) end
      local m = pht.json_decode(helpers.read(blob(desc.digest)))
      local layer = m.layers[1]
      helpers.run("zcat " .. q(blob(layer.digest)) .. " | zstd -q -c > " .. q(zdir .. "/layer.zst"))
      local zd = "sha256:" .. helpers.sha256_file(zdir .. "/layer.zst")
      helpers.run("mv " .. q(zdir .. "/layer.zst") .. " " .. q(blob(zd)))
      layer.digest, layer.mediaType = zd, "application/vnd.oci.image.layer.v1.tar+zstd"
      layer.size = tonumber(helpers.run("stat -c %s " .. q(blob(zd))))
      local text = pht.json_encode(m)
      helpers.write(zdir .. "/m.json", text)
      local md = "sha256:" .. helpers.sha256_file(zdir .. "/m.json")
      helpers.run("mv " .. q(zdir .. "/m.json") .. " " .. q(blob(md)))
      desc.digest, desc.size = md, #text
      helpers.write(zdir .. "/index.json", pht.json_encode({ schemaVersion = 2, manifests = { desc } }))
      for fmt, src in pairs({ gzip = "oci:" .. dir .. ":latest", zstd = "oci:" .. zdir .. ":latest" }) do
        local ref = "docker://" .. svc.addr .. "/" .. support.unique_name("skopeo-" .. fmt) .. "/base:v1"
        local ok, msg = skopeo("copy -q --dest-cert-dir " .. q(svc.cert_dir) .. " " .. q(src) .. " " .. q(ref))
        assert.is_true(ok, msg)
        local img = assert(open(ref, { cert_dir = svc.cert_dir }))
        assert.is_truthy(img:stat("/bin/busybox"))
        assert.is_truthy(img:layers()[1].media_type:find(fmt, 1, true), img:layers()[1].media_type)
        img:close()
      end
    end)

    it("resolves an image index to linux/amd64 or to the platform asked for, and names the ones it has", function()
      local svc = service("tls")
      local repo = support.unique_name("index") .. "/train"
      local ref = "docker://" .. svc.addr .. "/" .. repo
      assert.is_true(push(base_oci(), ref .. ":amd", { ["/opt/which"] = "amd64\n" }, { cert_dir = svc.cert_dir }))
      assert.is_true(push(base_oci(), ref .. ":arm", { ["/opt/which"] = "arm64\n" }, { cert_dir = svc.cert_dir }))
      local reg = assert(pht.open_registry(svc.addr, { cert_dir = svc.cert_dir }))
      local function desc(tag, arch)
        local data, media_type, digest = assert(reg:get_manifest(repo, tag))
        return { mediaType = media_type, digest = digest, size = #data,
          platform = { os = "linux", architecture = arch, variant = arch == "arm64" and "v8" or nil } }
      end
      local index = pht.json_encode({ schemaVersion = 2, mediaType = "application/vnd.oci.image.index.v1+json",
        manifests = { desc("arm", "arm64"), desc("amd", "amd64") } })
      assert(reg:put_manifest(repo, "multi", index, "application/vnd.oci.image.index.v1+json"))
      local img = assert(open(ref .. ":multi", { cert_dir = svc.cert_dir }))
      assert.are.equal("amd64\n", img:read_file("/opt/which"))
      img:close()
      img = assert(open(ref .. ":multi", { cert_dir = svc.cert_dir, platform = "linux/arm64" }))
      assert.are.equal("arm64\n", img:read_file("/opt/which"))
      img:close()
      local none, msg, code = open(ref .. ":multi", { cert_dir = svc.cert_dir, platform = "linux/s390x" })
      assert.is_nil(none)
      assert.are.equal("ENOTFOUND", code)
      mentions(msg, { "linux/s390x", "linux/arm64/v8", "linux/amd64", repo })
    end)
  end)

  describe("pushing", function()
    -- The TLS registry's access log lines for repository repo.
    local function log_for(svc, repo)
      local out = {}
      for line in io.lines((svc.storage:gsub("/data$", "/registry.log"))) do
        if line:find("/v2/" .. repo .. "/", 1, true) then out[#out + 1] = line end
      end
      return out
    end

    it("compresses a plain tar layer once: a later push of it mounts the gzip blob", function()
      local svc = service("tls")
      local archive = "docker-archive:" .. assert(support.base_image())
      local cache = helpers.tmpdir() .. "/cache"
      local a, b = support.unique_name("plain-a") .. "/base", support.unique_name("plain-b") .. "/base"
      for _, repo in ipairs({ a, b }) do
        assert.is_true(push(archive, "docker://" .. svc.addr .. "/" .. repo .. ":v1", nil,
          { cert_dir = svc.cert_dir, cache_dir = cache }))
      end
      local patches = { [a] = 0, [b] = 0 }
      for repo in pairs(patches) do
        for _, line in ipairs(log_for(svc, repo)) do
          if line:find('"PATCH ', 1, true) then patches[repo] = patches[repo] + 1 end
        end
      end
      assert.are.same({ [a] = 2, [b] = 0 }, patches) -- a: the layer and the config; b: mounts only
      assert.are.equal(digest_of("docker://" .. svc.addr .. "/" .. a .. ":v1", svc.cert_dir),
        digest_of("docker://" .. svc.addr .. "/" .. b .. ":v1", svc.cert_dir))
    end)

    it("refuses to write to a digest reference, which a push cannot choose", function()
      local svc = service("tls")
      local dest = "docker://" .. svc.addr .. "/" .. support.unique_name("bydigest") .. "/t@sha256:"
        .. string.rep("ab", 32)
      local ok, msg = push(base_oci(), dest, { ["/opt/x"] = "x" }, { cert_dir = svc.cert_dir })
      assert.is_nil(ok)
      mentions(msg, { "digest", "TAG" })
    end)
  end)

  describe("into a Docker engine", function()
    -- Files under the cache dir's blob store.
    local function blobs(cache)
      local out = {}
      for line in listing(cache .. "/registry-blobs/sha256"):gmatch("[^\n]+") do
        out[#out + 1] = line:match("([%x]+)$")
      end
      return out
    end

    it("fetches none of the base's blobs when the engine holds REPO:base", function()
      local svc = service("plain")
      if not docker_up() then return end
      local base = assert(support.load_base_image())
      local src = "docker://" .. svc.addr .. "/" .. support.unique_name("engine") .. "/train:v1"
      assert.is_true(push(base_oci(), src, { ["/opt/pht_train/x.txt"] = "into the engine\n" },
        { tls_verify = false }))
      local repo = support.unique_name("engine-dest")
      local dest = "docker-daemon:" .. repo .. ":v1"
      assert.is_true((support.docker("tag " .. q(base) .. " " .. q(repo .. ":base"))))
      finally(function()
        support.docker("rmi " .. q(repo .. ":v1"))
        support.docker("rmi " .. q(repo .. ":base"))
      end)
      local cache = helpers.tmpdir() .. "/cache"
      local img = assert(open(src, { tls_verify = false, cache_dir = cache }))
      local layers = img:layers()
      assert.are.equal(2, #layers)
      local w = assert(img:writer())
      assert.is_true(keep(w:commit(dest)))
      w:close()
      img:close()
      -- Only the train's own layer came from the registry.
      local fetched = blobs(cache)
      assert.are.same({ (layers[2].digest:gsub("^sha256:", "")) }, fetched)
      local ran, text = support.docker("run --rm --network none " .. q(repo .. ":v1") .. " cat /opt/pht_train/x.txt")
      assert.is_true(ran, text)
      assert.are.equal("into the engine\n", text)
    end)

    it("fetches every blob when the engine holds no base", function()
      local svc = service("plain")
      if not docker_up() then return end
      local src = "docker://" .. svc.addr .. "/" .. support.unique_name("engine-nobase") .. "/train:v1"
      assert.is_true(push(base_oci(), src, { ["/opt/pht_train/x.txt"] = "all of it\n" }, { tls_verify = false }))
      local repo = support.unique_name("engine-nobase-dest")
      finally(function() support.docker("rmi " .. q(repo .. ":v1")) end)
      local cache = helpers.tmpdir() .. "/cache"
      local img = assert(open(src, { tls_verify = false, cache_dir = cache }))
      local layers = img:layers()
      local w = assert(img:writer())
      assert.is_true(keep(w:commit("docker-daemon:" .. repo .. ":v1")))
      w:close()
      img:close()
      local want = {}
      for i, l in ipairs(layers) do want[i] = (l.digest:gsub("^sha256:", "")) end
      local fetched = blobs(cache)
      table.sort(want)
      table.sort(fetched)
      assert.are.same(want, fetched)
      local ran, text = support.docker("run --rm --network none " .. q(repo .. ":v1") .. " cat /opt/pht_train/x.txt")
      assert.is_true(ran, text)
      assert.are.equal("all of it\n", text)
    end)
  end)

  describe("refuses cleanly", function()
    it("a wrong password, naming registry, repository and credential source but not the password", function()
      local svc = service("basic")
      secret(svc.password)
      local wrong = secret("not-" .. svc.password)
      local ref = "docker://" .. svc.addr .. "/station_2/train:v1"
      local img, msg, code = open(ref, { cert_dir = svc.cert_dir, creds = svc.user .. ":" .. wrong })
      assert.is_nil(img)
      assert.are.equal("EHTTP", code)
      mentions(msg, { svc.addr, "station_2/train", "HTTP 401", svc.user, "--creds" })
      -- the command line says the same on stderr and in no other way
      local c, out, err = S.pht("inspect --json " .. q(ref) .. " --cert-dir " .. q(svc.cert_dir)
        .. " --creds " .. q(svc.user .. ":" .. wrong))
      assert.are.equal(3, c, err)
      messages[#messages + 1] = out .. err
      mentions(err, { svc.addr, "station_2/train", "HTTP 401" })
    end)

    it("an expired token, after fetching one more", function()
      local svc = service("token")
      local p = support.unique_name("expired"):gsub("%-", "_")
      local user = "robot$" .. p
      local pw = secret(pht.hex(pht.random(12)))
      local file = support.token_user(svc, user, { password = pw, expired = true,
        access = { [p .. "/*"] = { "pull", "push" } } })
      finally(function() os.remove(file) end)
      local img, msg, code = open("docker://" .. svc.addr .. "/" .. p .. "/train:v1",
        { cert_dir = svc.cert_dir, creds = user .. ":" .. pw })
      assert.is_nil(img)
      assert.are.equal("EHTTP", code)
      mentions(msg, { svc.addr, p .. "/train", "HTTP 401", user })
    end)

    it("a push into a project whose scope was revoked (403), leaving no tag", function()
      local svc = service("token")
      local p = support.unique_name("revoked"):gsub("%-", "_")
      local user = "robot$" .. p
      local pw = secret(pht.hex(pht.random(12)))
      local file = support.token_user(svc, user, { password = pw, access = { ["*"] = { "pull", "push" } },
        revoked = { p .. "/*" } })
      local reader, rpw = user .. "_reader", secret(pht.hex(pht.random(12)))
      local rfile = support.token_user(svc, reader, { password = rpw, access = { [p .. "/*"] = { "pull" } } })
      finally(function() os.remove(file) os.remove(rfile) end)
      local dest = "docker://" .. svc.addr .. "/" .. p .. "/train:v1"
      local ok, msg = push(base_oci(), dest, { ["/opt/x"] = "x" },
        { cert_dir = svc.cert_dir, creds = user .. ":" .. pw })
      assert.is_nil(ok)
      mentions(msg, { svc.addr, p .. "/train", "HTTP 403", user })
      local none, why = digest_of(dest, svc.cert_dir, reader .. ":" .. rpw)
      assert.is_nil(none)
      assert.is_truthy(why:find("manifest unknown", 1, true), why)
    end)

    it("a push whose upload is cut every time: three tries, then an error, and the tag unchanged", function()
      local svc = service("plain")
      local repo = support.unique_name("cutpush") .. "/train"
      local direct = "docker://" .. svc.addr .. "/" .. repo .. ":v1"
      assert.is_true(push(base_oci(), direct, { ["/opt/x"] = "first" }, { tls_verify = false }))
      local before = assert(digest_of(direct))
      local proxy = assert(netfault.start("cut", { upstream = svc.addr, after = 200000, direction = "up" }))
      finally(function() proxy:stop() end)
      local ok, msg = push(base_oci(), "docker://" .. proxy.addr .. "/" .. repo .. ":v1",
        { ["/opt/big"] = pht.random(600000) }, { tls_verify = false })
      assert.is_nil(ok)
      mentions(msg, { proxy.addr, repo, "3 tries" })
      assert.are.equal(before, digest_of(direct))
      local cuts = 0
      for _, e in ipairs(decode_events(proxy)) do
        if e.event == "cut" then cuts = cuts + 1 end
      end
      assert.are.equal(3, cuts)
    end)

    it("a pull whose blob download is cut once resumes; cut every time, it fails and caches nothing", function()
      local svc = service("plain")
      local repo = support.unique_name("cutpull") .. "/train"
      assert.is_true(push(base_oci(), "docker://" .. svc.addr .. "/" .. repo .. ":v1",
        { ["/opt/big"] = pht.random(600000) }, { tls_verify = false }))
      local once = assert(netfault.start("cut", { upstream = svc.addr, after = 300000, cuts = 1 }))
      local always
      -- one finally for both: busted keeps only the last one a test sets
      finally(function()
        once:stop()
        if always then always:stop() end
      end)
      local img = assert(open("docker://" .. once.addr .. "/" .. repo .. ":v1", { tls_verify = false }))
      assert.are.equal(600000, #assert(img:read_file("/opt/big")))
      img:close()
      always = assert(netfault.start("cut", { upstream = svc.addr, after = 300000 }))
      local cache = helpers.tmpdir() .. "/cache"
      img = assert(open("docker://" .. always.addr .. "/" .. repo .. ":v1", { tls_verify = false, cache_dir = cache }))
      local data, msg = keep(img:read_file("/opt/big"))
      assert.is_nil(data)
      mentions(msg, { always.addr, repo, "3 tries" })
      img:close()
      assert.are.equal("", helpers.run("find " .. q(cache .. "/registry-blobs/sha256") .. " -type f -size +1k"))
    end)

    it("a manifest whose bytes do not have its digest, by digest and by tag", function()
      local svc = service("tls")
      local repo = support.unique_name("tamper") .. "/train"
      local ref = "docker://" .. svc.addr .. "/" .. repo
      assert.is_true(push(base_oci(), ref .. ":v1", { ["/opt/x"] = repo }, { cert_dir = svc.cert_dir }))
      local digest = assert(digest_of(ref .. ":v1", svc.cert_dir))
      local data = svc.storage .. "/docker/registry/v2/blobs/sha256/" .. digest:sub(8, 9) .. "/"
        .. digest:sub(8) .. "/data"
      helpers.write(data, helpers.read(data) .. " ")
      for _, r in ipairs({ ref .. "@" .. digest, ref .. ":v1" }) do
        local img, msg, code = open(r, { cert_dir = svc.cert_dir })
        assert.is_nil(img)
        assert.are.equal("EVERIFY", code)
        mentions(msg, { repo })
      end
    end)

    it("a layer blob changed in the registry: nothing of it is cached, nothing is pushed", function()
      local svc = service("tls")
      local repo = support.unique_name("tamperblob") .. "/train"
      local ref = "docker://" .. svc.addr .. "/" .. repo .. ":v1"
      assert.is_true(push(base_oci(), ref, { ["/opt/big"] = pht.random(100000) }, { cert_dir = svc.cert_dir }))
      local cache = helpers.tmpdir() .. "/cache"
      local img = assert(open(ref, { cert_dir = svc.cert_dir, cache_dir = cache }))
      local top = img:layers()[2].digest
      img:close()
      local data = svc.storage .. "/docker/registry/v2/blobs/sha256/" .. top:sub(8, 9) .. "/" .. top:sub(8) .. "/data"
      local bytes = helpers.read(data)
      helpers.write(data, bytes:sub(1, 5000) .. string.char((bytes:byte(5001) + 1) % 256) .. bytes:sub(5002))
      img = assert(open(ref, { cert_dir = svc.cert_dir, cache_dir = cache }))
      local got, msg, code = keep(img:read_file("/opt/big"))
      assert.is_nil(got)
      assert.are.equal("EVERIFY", code)
      mentions(msg, { repo })
      assert.is_nil(io.open(cache .. "/registry-blobs/sha256/" .. top:sub(8), "rb"))
      local w = assert(img:writer())
      local dest = "docker://" .. svc.addr .. "/" .. repo .. "-copy:v1"
      local ok, why, wcode = keep(w:commit(dest))
      assert.is_nil(ok)
      assert.are.equal("EVERIFY", wcode, why)
      w:close()
      img:close()
      assert.is_nil(digest_of(dest, svc.cert_dir))
    end)

    it("a registry answering 503 twice: retried with backoff, then the pull goes on", function()
      local svc = service("plain")
      local repo = support.unique_name("busy") .. "/train"
      assert.is_true(push(base_oci(), "docker://" .. svc.addr .. "/" .. repo .. ":v1", { ["/opt/x"] = "y" },
        { tls_verify = false }))
      local proxy = assert(netfault.start("status", { upstream = "http://" .. svc.addr, status = 503,
        match = "/manifests/", times = 2 }))
      finally(function() proxy:stop() end)
      local img = assert(open("docker://" .. proxy.addr .. "/" .. repo .. ":v1", { tls_verify = false }))
      assert.are.equal("y", img:read_file("/opt/x"))
      img:close()
      local seen = {}
      for _, e in ipairs(decode_events(proxy)) do
        if e.path:find("/manifests/", 1, true) then seen[#seen + 1] = e.status or 200 end
      end
      assert.are.same({ 503, 503, 200 }, seen)
    end)

    it("a registry answering 429 to every blob: three tries, a clear error, nothing cached", function()
      local svc = service("plain")
      local repo = support.unique_name("limited") .. "/train"
      assert.is_true(push(base_oci(), "docker://" .. svc.addr .. "/" .. repo .. ":v1", { ["/opt/x"] = "y" },
        { tls_verify = false }))
      local proxy = assert(netfault.start("status", { upstream = "http://" .. svc.addr, status = 429,
        match = "/blobs/sha256:" }))
      finally(function() proxy:stop() end)
      local cache = helpers.tmpdir() .. "/cache"
      local img, msg = open("docker://" .. proxy.addr .. "/" .. repo .. ":v1", { tls_verify = false, cache_dir = cache })
      assert.is_nil(img)
      mentions(msg, { proxy.addr, repo, "429", "3 tries" })
      assert.are.equal("", listing(cache .. "/registry-blobs/sha256"))
    end)

    it("a plain-http registry unless told --tls-verify=false, and a CA it was not given", function()
      local svc = service("plain")
      local repo = support.unique_name("plainhttp") .. "/train"
      local ref = "docker://" .. svc.addr .. "/" .. repo .. ":v1"
      assert.is_true(push(base_oci(), ref, { ["/opt/x"] = "y" }, { tls_verify = false }))
      local img, msg = open(ref)
      assert.is_nil(img)
      mentions(msg, { svc.addr })
      img = assert(open(ref, { tls_verify = false }))
      img:close()
      local tls = service("tls")
      img, msg = open("docker://" .. tls.addr .. "/" .. repo .. ":v1")
      assert.is_nil(img)
      mentions(msg, { tls.addr, "certificate" })
    end)

    it("an unknown tag or repository: ENOTFOUND naming it", function()
      local svc = service("tls")
      local repo = support.unique_name("nothing") .. "/train"
      local img, msg, code = open("docker://" .. svc.addr .. "/" .. repo .. ":v9", { cert_dir = svc.cert_dir })
      assert.is_nil(img)
      assert.are.equal("ENOTFOUND", code)
      mentions(msg, { svc.addr, repo, "v9" })
    end)

    it("follows a blob redirect to another host without sending it the Authorization header", function()
      local svc = service("basic")
      local creds = svc.user .. ":" .. secret(svc.password)
      local repo = "station_2/" .. support.unique_name("redirect")
      assert.is_true(push(base_oci(), "docker://" .. svc.addr .. "/" .. repo .. ":v1", { ["/opt/x"] = "r" },
        { cert_dir = svc.cert_dir, creds = creds }))
      local proxy = assert(netfault.start("redirect", { upstream = "https://" .. svc.addr, ca = svc.ca,
        creds = creds, redirect_host = "localhost" }))
      finally(function() proxy:stop() end)
      local img = assert(open("docker://" .. proxy.addr .. "/" .. repo .. ":v1", { tls_verify = false, creds = creds }))
      assert.are.equal("r", img:read_file("/opt/x"))
      img:close()
      local at_registry, at_storage = 0, 0
      for _, e in ipairs(decode_events(proxy)) do
        if e.path:find("/blobs/sha256:", 1, true) then
          if e.listener == "registry" and e.authorization then at_registry = at_registry + 1 end
          if e.listener == "storage" then
            at_storage = at_storage + 1
            assert.is_false(e.authorization, "the Authorization header went to the other host: " .. e.path)
          end
        end
      end
      assert.is_true(at_registry > 0 and at_storage > 0, "no redirected blob download")
    end)
  end)

  describe("takes credentials as skopeo does", function()
    local state
    -- A train built into the basic-auth registry (robot$station_2), and an auth file for it.
    local function train()
      if state then return state end
      local svc = service("basic")
      local dir = helpers.tmpdir()
      local creds = svc.user .. ":" .. secret(svc.password)
      for _, who in ipairs({ "creator", "s1" }) do assert.are.equal(0, (S.pht("keygen --out " .. q(dir .. "/" .. who)))) end
      helpers.run("mkdir -p " .. q(dir .. "/files") .. " && echo run > " .. q(dir .. "/files/entrypoint.sh"))
      local ref = "docker://" .. svc.addr .. "/station_2/" .. support.unique_name("creds") .. ":latest"
      local code, _, err = S.pht("build -q --files " .. q(dir .. "/files") .. " --station "
        .. q("s1=" .. dir .. "/s1.pub.pem") .. " --creator-id 7 --creator-key " .. q(dir .. "/creator.pem")
        .. " --base " .. q(base_oci()) .. " --output " .. q(ref) .. " --cert-dir " .. q(svc.cert_dir)
        .. " --creds " .. q(creds))
      assert.are.equal(0, code, err)
      local b64 = secret((helpers.run("printf %s " .. q(creds) .. " | base64 -w0"):gsub("%s+$", "")))
      local auth = pht.json_encode({ auths = { [svc.addr .. "/station_2"] = { auth = b64 } } })
      state = { svc = svc, ref = ref, auth = auth, dir = dir }
      return state
    end

    -- pht inspect ref with env; returns exit code and all it printed.
    local function inspect(t, env, extra)
      local code, out, err = S.pht("inspect --json " .. q(t.ref) .. " --cert-dir " .. q(t.svc.cert_dir)
        .. (extra or ""), env)
      messages[#messages + 1] = out .. err
      return code, out .. err
    end

    it("from $REGISTRY_AUTH_FILE, with a Harbor robot name in it", function()
      local t = train()
      local file = helpers.tmpdir() .. "/auth.json"
      helpers.write(file, t.auth)
      local code, out = inspect(t, { REGISTRY_AUTH_FILE = file, HOME = helpers.tmpdir() })
      assert.are.equal(0, code, out)
      code, out = inspect(t, { HOME = helpers.tmpdir() }, " --authfile " .. q(file))
      assert.are.equal(0, code, out)
    end)

    it("from $XDG_RUNTIME_DIR/containers/auth.json", function()
      local t = train()
      local run = helpers.tmpdir()
      helpers.run("mkdir -p " .. q(run .. "/containers"))
      helpers.write(run .. "/containers/auth.json", t.auth)
      local code, out = inspect(t, { XDG_RUNTIME_DIR = run, HOME = helpers.tmpdir() })
      assert.are.equal(0, code, out)
    end)

    it("from ~/.docker/config.json", function()
      local t = train()
      local home = helpers.tmpdir()
      helpers.run("mkdir -p " .. q(home .. "/.docker"))
      helpers.write(home .. "/.docker/config.json", t.auth)
      local code, out = inspect(t, { HOME = home, XDG_RUNTIME_DIR = helpers.tmpdir() })
      assert.are.equal(0, code, out)
    end)

    it("without any, a 401 that says no credentials were found", function()
      local t = train()
      local code, out = inspect(t, { HOME = helpers.tmpdir(), XDG_RUNTIME_DIR = helpers.tmpdir() })
      assert.are.equal(3, code, out)
      mentions(out, { t.svc.addr, "station_2/", "HTTP 401" })
    end)

    it("with --creds first, over an auth file that would work", function()
      local t = train()
      local file = helpers.tmpdir() .. "/auth.json"
      helpers.write(file, t.auth)
      local code, out = inspect(t, { REGISTRY_AUTH_FILE = file, HOME = helpers.tmpdir() },
        " --creds " .. q(t.svc.user .. ":" .. secret("wrong-" .. t.svc.password)))
      assert.are.equal(3, code, out)
      mentions(out, { "HTTP 401", "--creds", t.svc.user })
    end)
  end)

  it("keeps passwords and tokens out of every message and every output", function()
    assert.is_true(#messages > 0)
    for _, msg in ipairs(messages) do
      assert.is_nil(msg:find("eyJ", 1, true), "a JWT in: " .. msg)
      for _, s in ipairs(secrets) do assert.is_nil(msg:find(s, 1, true), "a secret in: " .. msg) end
    end
  end)
end)
