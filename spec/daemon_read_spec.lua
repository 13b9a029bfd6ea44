-- How libpht reads an image of the Docker daemon without exporting it: the
-- id resolved once, the config rebuilt from the engine's inspect and history
-- answers, /opt from the engine's overlay2 store where it can be read (root,
-- overlay2), else from a created and never started container that is removed
-- on every path (and, left by a killed process, by the next read), the whole
-- image saved only when something outside /opt or another transport needs
-- the layers. The docker CLI is the oracle: `docker save` read with tar and
-- with libpht's docker-archive transport, `docker ps` for the scratch
-- containers, `docker image inspect` for ids; the engine's own archive of
-- /opt (PHT_DOCKER_STORE=0) for the store's. A process is held between
-- container create and remove with the test hook
-- PHT_TEST_PAUSE_AFTER_CREATE=SECONDS[:FILE] (doc/testing.md), with
-- PHT_DOCKER_STORE=0 so that it makes one.
local helpers = require "helpers"
local pht = require "pht"
local support = require "support"
local S = require "wf_support"
local D = require "daemon_support"

local q = helpers.q

-- What a spec made, removed after it (busted keeps one `finally` per spec).
local made = {}
local function later(fn) made[#made + 1] = fn end
after_each(function()
  for i = #made, 1, -1 do made[i]() end
  made = {}
end)

-- A reference stage in the daemon under a name of its own, removed when the spec ends.
local function stage(n)
  local tag = D.load_stage(S.stages[n], support.unique_name("daemon-read"))
  later(function() D.rmi(tag) end)
  return tag
end

-- An image made from the base image by `docker run sh -c script` and `docker commit`.
local function committed(script)
  local base = assert(support.load_base_image())
  local tag = support.unique_name("daemon-read") .. ":latest"
  local name = support.unique_name("daemon-read-run")
  later(function() support.docker("rm -f " .. q(name)) D.rmi(tag) end)
  D.docker("run --name " .. q(name) .. " --network none " .. q(base) .. " /bin/sh -c " .. q(script))
  D.docker("commit " .. q(name) .. " " .. q(tag))
  D.docker("rm " .. q(name))
  return tag
end

-- A commit through libpht that changes only the runtime config: a history
-- entry without a layer, as `docker build` writes for ENV.
local function config_only(from)
  local tag = support.unique_name("daemon-read-cfg") .. ":latest"
  later(function() D.rmi(tag) end)
  local img = assert(pht.open_image("docker-daemon:" .. from))
  local w = assert(img:writer({}))
  assert(w:set_config({ env = { PHT_READ_SPEC = "1" } }))
  assert(w:commit("docker-daemon:" .. tag, { history = "config only" }))
  img:close()
  return tag
end

-- The created_by of each layer, as libpht reads the image `docker save` writes.
local function saved_history(tag)
  local img = assert(pht.open_image("docker-archive:" .. D.save(tag) .. ":" .. tag))
  local list = {}
  for i, l in ipairs(img:layers()) do list[i] = l.created_by or "" end
  img:close()
  return list
end

local function history_of(img)
  local list = {}
  for i, l in ipairs(img:layers()) do list[i] = l.created_by or "" end
  return list
end

describe("docker-daemon: reading an image", function()
  it("reads /opt without saving the image, and leaves no scratch container", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local tag = stage(1)
    local img = assert(pht.open_image("docker-daemon:" .. tag))
    local cfg = assert(img:read_file("/opt/train_config.json"))
    assert.equal("file", img:stat("/opt/pht_train/entrypoint.sh").type)
    for i, l in ipairs(img:layers()) do
      assert.equal(0, l.size, "layer " .. i .. " was saved although only /opt was read")
    end
    img:close()
    local saved = assert(pht.open_image("docker-archive:" .. D.save(tag)))
    assert.equal(assert(saved:read_file("/opt/train_config.json")), cfg)
    saved:close()
    assert.same({}, D.scratch())
  end)

  it("maps the history onto the layers as the saved config does, entries without a layer included", function()
    local ok, why = D.ready(true)
    if not ok then return pending(why) end
    local tag = config_only(assert(support.load_base_image()))
    local img = assert(pht.open_image("docker-daemon:" .. tag))
    assert.same(saved_history(tag), history_of(img))
    assert.equal(0, img:layers()[1].size, "the layer sizes told the entries apart: nothing to save")
    img:close()
  end)

  it("leaves out the time of a config and a history that have none, as the saved config does", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    -- the base image with every "created" taken out of its config, loaded under a name of its own
    local dir = helpers.tmpdir() .. "/timeless"
    helpers.run("mkdir -p " .. q(dir) .. " && tar -xf " .. q(support.base_image()) .. " -C " .. q(dir))
    local manifest = helpers.read(dir .. "/manifest.json")
    local cfgname = assert(manifest:match('"Config":%s*"([^"]+)"'))
    local cfg = helpers.read(dir .. "/" .. cfgname):gsub('"created":%s*"[^"]*",?', "")
    assert.falsy(cfg:find('"created"', 1, true))
    helpers.write(dir .. "/new.json", cfg)
    local hex = assert(helpers.sha256_file(dir .. "/new.json"))
    helpers.run("mv " .. q(dir .. "/new.json") .. " " .. q(dir .. "/" .. hex .. ".json") .. " && rm " .. q(dir .. "/" .. cfgname))
    local tag = support.unique_name("daemon-read-timeless") .. ":latest"
    later(function() D.rmi(tag) end)
    manifest = manifest:gsub('"Config":%s*"[^"]+"', '"Config":"' .. hex .. '.json"', 1)
      :gsub('"RepoTags":%s*%b[]', '"RepoTags":["' .. tag .. '"]', 1)
    helpers.write(dir .. "/manifest.json", manifest)
    helpers.run("tar -cf " .. q(dir .. ".tar") .. " -C " .. q(dir) .. " .")
    D.docker("load --quiet --input " .. q(dir .. ".tar"))
    local img = assert(pht.open_image("docker-daemon:" .. tag))
    local got = img:image_config()
    img:close()
    -- the Engine answers Go's zero time (year 1) for both; the config libpht rebuilds has no time
    assert.falsy(got:find('"created"', 1, true), got)
    local saved = assert(pht.open_image("docker-archive:" .. D.save(tag)))
    assert.falsy(saved:image_config():find('"created"', 1, true))
    saved:close()
  end)

  it("saves the image at open when the history cannot tell an empty layer from an entry without one", function()
    local ok, why = D.ready(true)
    if not ok then return pending(why) end
    -- a layer of one empty directory has size 0, as the config-only entry above it
    local tag = config_only(committed("mkdir /pht-empty-dir"))
    local img = assert(pht.open_image("docker-daemon:" .. tag))
    local layers = img:layers()
    assert.equal(2, #layers)
    assert.same(saved_history(tag), history_of(img))
    assert.matches("mkdir /pht%-empty%-dir", layers[2].created_by)
    assert.is_true(layers[2].size > 0, "the image was not saved")
    assert.equal("dir", img:stat("/pht-empty-dir").type)
    img:close()
    assert.same({}, D.scratch())
  end)

  it("saves the whole image for a path outside /opt, checked against the id", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local tag = assert(support.load_base_image())
    local img = assert(pht.open_image("docker-daemon:" .. tag))
    assert.equal(0, img:layers()[1].size)
    assert.equal("root:x:0:0:root:/root:/bin/sh", (assert(img:read_file("/etc/passwd")):match("^[^\n]*")))
    assert.is_true(img:layers()[1].size > 0)
    img:close()
  end)

  it("commits a daemon image to a docker-archive with every layer's bytes", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local tag = stage(1)
    local out = helpers.tmpdir() .. "/out.tar"
    local img = assert(pht.open_image("docker-daemon:" .. tag))
    local n = #img:layers()
    local w = assert(img:writer({}))
    assert(w:add_bytes("/opt/added.txt", "added\n"))
    assert(w:commit("docker-archive:" .. out .. ":pht/out:latest"))
    img:close()
    local members = table.concat(S.members(out), "\n")
    local copy = assert(pht.open_image("docker-archive:" .. out))
    assert.equal(n + 1, #copy:layers())
    assert.equal("added\n", copy:read_file("/opt/added.txt"))
    assert.truthy(copy:read_file("/opt/train_config.json"))
    copy:close()
    assert.truthy(members:find("manifest.json", 1, true))
  end)
end)

describe("docker-daemon: /opt from the engine's overlay2 store", function()
  local lua = jit and "luajit" or "lua5.4"

  -- Every entry under /opt of ref as a fresh interpreter reads it (env
  -- prefixed): path, type, mode, owner, size, mtime, link and a digest of
  -- the content; and the scratch containers the daemon created meanwhile.
  local function listing(ref, env)
    local script = ([[
      package.path, package.cpath = %q, %q
      local pht = require "pht"
      local img = assert(pht.open_image(%q))
      for _, e in ipairs(assert(img:walk("/opt"))) do
        local p = "/opt/" .. e.path
        local sum = ""
        if e.type == "file" then sum = pht.hex(pht.sha512(assert(img:read_file(p)))):sub(1, 32) end
        print(table.concat({ p, e.type, ("%%o"):format(e.mode), e.uid, e.gid, e.size, e.mtime,
          e.link or "", sum }, " "))
      end
      img:close()
    ]]):format(package.path, package.cpath, ref)
    local t0 = D.now()
    local out = helpers.run(env .. " DOCKER_HOST=" .. q(support.docker_host()) .. " " .. lua .. " -e " .. q(script))
    local ev = D.docker("events --since " .. t0 .. " --until " .. D.now()
      .. " --filter type=container --filter event=create --format '{{.Actor.ID}}'")
    local creates = 0
    for _ in ev:gmatch("%x+") do creates = creates + 1 end
    return out, creates
  end

  it("reads the merged /opt as the engine's archive has it: whiteouts, opaque directories, paths"
    .. " replaced or whited out and made again, without a container", function()
    local ok, why = D.store_ready()
    if not ok then return pending(why) end
    local tag = stage(1)
    local ref = "docker-daemon:" .. tag
    D.tamper(ref, function(w)
      assert(w:add_dir("/opt/a", { mode = tonumber("750", 8), uid = 7, mtime = 1000 }))
      assert(w:add_bytes("/opt/a/x.txt", "one\n", { mtime = 1001 }))
      assert(w:add_bytes("/opt/a/y.txt", "two\n", { mode = tonumber("600", 8), gid = 9 }))
      assert(w:add_bytes("/opt/a/sub/z.txt", "three\n"))
      assert(w:add_bytes("/opt/b/old.txt", "old\n"))
      assert(w:add_bytes("/opt/c/1", "c1\n"))
      assert(w:add_symlink("/opt/lnk", "a/x.txt"))
      assert(w:add_bytes("/opt/gone.txt", "gone\n"))
      assert(w:add_bytes("/opt/becomes_dir", "file\n"))
    end, "layer 1")
    D.tamper(ref, function(w)
      assert(w:whiteout("/opt/a/y.txt"))
      assert(w:add_bytes("/opt/a/x.txt", "changed\n", { mtime = 2002 }))
      assert(w:add_dir("/opt/b", { opaque = true }))
      assert(w:add_bytes("/opt/b/new.txt", "new\n"))
      assert(w:whiteout("/opt/c"))
      assert(w:add_bytes("/opt/lnk", "no longer a link\n"))
      assert(w:whiteout("/opt/gone.txt"))
      assert(w:add_bytes("/opt/becomes_dir/inside", "in\n"))
    end, "layer 2")
    D.tamper(ref, function(w)
      assert(w:add_bytes("/opt/a/sub/w.txt", "four\n"))
      assert(w:add_bytes("/opt/c/2", "c2\n"))
    end, "layer 3")
    local engine, made = listing(ref, "PHT_DOCKER_STORE=0")
    assert.is_true(made >= 1, "PHT_DOCKER_STORE=0 read /opt without a scratch container")
    local store, none = listing(ref, "")
    assert.equal(0, none, "the store's /opt was read through a container")
    assert.equal(engine, store)
    -- what the layers left: the oracle agrees with what they meant
    for _, want in ipairs({ "^/opt/a/x.txt file .* 8 2002 ", "\n/opt/a/sub/w.txt file ", "\n/opt/b/new.txt file ",
      "\n/opt/c/2 file ", "\n/opt/lnk file ", "\n/opt/becomes_dir/inside file ", "\n/opt/train_config.json file " }) do
      assert.truthy(("\n" .. store):find(want:gsub("^%^", "\n")), want)
    end
    for _, gone in ipairs({ "/opt/a/y.txt ", "/opt/b/old.txt ", "/opt/c/1 ", "/opt/gone.txt " }) do
      assert.falsy(store:find(gone, 1, true), gone)
    end
  end)
end)

describe("docker-daemon: /opt's files read where the store keeps them", function()
  local lua = jit and "luajit" or "lua5.4"

  -- A fresh interpreter (env prefixed) opens ref, reads the result whole and
  -- extracts /opt/pht_results into dir: the SHA-512 of each, and the bytes
  -- the process wrote to storage for the open and the read (/proc/self/io).
  local function read_big(ref, env, dir)
    local script = ([[
      package.path, package.cpath = %q, %q
      local pht = require "pht"
      local function written()
        return tonumber(io.open("/proc/self/io"):read("a"):match("write_bytes: (%%d+)"))
      end
      local w0 = written()
      local img = assert(pht.open_image(%q))
      local data = assert(img:read_file("/opt/pht_results/big.bin", 64 * 1024 * 1024))
      local w1 = written()
      assert(img:extract("/opt/pht_results", %q))
      img:close()
      local f = assert(io.open(%q, "rb"))
      local x = f:read("a")
      f:close()
      print(pht.hex(pht.sha512(data)), pht.hex(pht.sha512(x)), w1 - w0)
    ]]):format(package.path, package.cpath, ref, dir, dir .. "/big.bin")
    local out = helpers.run(env .. " DOCKER_HOST=" .. q(support.docker_host()) .. " " .. lua .. " -e " .. q(script))
    local read, extracted, bytes = out:match("(%x+)%s+(%x+)%s+(%d+)")
    assert(bytes, out)
    return read, extracted, tonumber(bytes)
  end

  it("reads and extracts a 32 MB result without copying it to a temporary file first", function()
    local ok, why = D.store_ready()
    if not ok then return pending(why) end
    local tag = committed("mkdir -p /opt/pht_results && head -c 33554432 /dev/urandom > /opt/pht_results/big.bin")
    local ref = "docker-daemon:" .. tag
    -- the oracle: the engine's archive of /opt, landed in a temporary file
    local e_read, e_extracted, e_bytes = read_big(ref, "PHT_DOCKER_STORE=0", helpers.tmpdir())
    assert.is_true(e_bytes >= 32 * 1024 * 1024, "the engine's archive landed " .. e_bytes .. " bytes")
    assert.equal(e_read, e_extracted)
    local s_read, s_extracted, s_bytes = read_big(ref, "", helpers.tmpdir())
    assert.equal(e_read, s_read)
    assert.equal(e_read, s_extracted)
    assert.is_true(s_bytes < 1024 * 1024, "the store's /opt wrote " .. s_bytes .. " bytes")
  end)
end)

describe("docker-daemon: scratch containers", function()
  it("a process killed between create and remove leaves a labelled container that the next read removes", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local tag = stage(0)
    local job = D.start("inspect " .. q("docker-daemon:" .. tag), { PHT_TEST_PAUSE_AFTER_CREATE = "60", PHT_DOCKER_STORE = "0" })
    local left = D.wait_scratch(job.pid)
    helpers.run("kill -KILL " .. job.pid)
    assert.equal(137, (job.wait()))
    assert.same({ left }, D.scratch_of(job.pid))
    local code, _, err = S.pht("inspect " .. q("docker-daemon:" .. tag), D.env())
    assert.equal(0, code, err)
    assert.same({}, D.scratch())
  end)

  it("leaves the scratch container of a process that still runs", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local tag = stage(0)
    local resume = helpers.tmpdir() .. "/resume"
    local job = D.start("inspect " .. q("docker-daemon:" .. tag), { PHT_TEST_PAUSE_AFTER_CREATE = "60:" .. resume, PHT_DOCKER_STORE = "0" })
    local held = D.wait_scratch(job.pid)
    local code, _, err = S.pht("inspect " .. q("docker-daemon:" .. tag), D.env())
    assert.equal(0, code, err)
    assert.same({ held }, D.scratch_of(job.pid))
    helpers.write(resume, "")
    local jcode, out, jerr = job.wait()
    assert.equal(0, jcode, jerr)
    assert.matches("train ", out, 1, true)
    assert.same({}, D.scratch())
  end)
end)

describe("docker-daemon: a tag that moves during the read", function()
  it("pre-run works on the image id it resolved first and writes nothing over the moved tag", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local tag = stage(0)
    local input = assert(D.id(tag))
    later(function() D.rmi(input) end)
    local other = assert(D.id(assert(support.load_base_image())))
    local dangling = D.dangling()
    local resume = helpers.tmpdir() .. "/resume"
    local job = D.start("pre-run -q " .. q("docker-daemon:" .. tag) .. " " .. S.station_args(1),
      { PHT_TEST_PAUSE_AFTER_CREATE = "60:" .. resume, PHT_DOCKER_STORE = "0" })
    D.wait_scratch(job.pid)
    D.docker("tag " .. q(other) .. " " .. q(tag))
    helpers.write(resume, "")
    local code, _, err = job.wait()
    assert.equal(3, code, err)
    assert.matches("pre-run failed at step write_image: ", err, 1, true)
    assert.matches(tag .. " was read as image " .. input .. " but names " .. other .. " now; nothing written",
      err, 1, true)
    assert.equal(other, D.id(tag))
    assert.equal(input, D.id(input), "the input image is gone")
    assert.same({ input }, D.new_dangling(dangling))
    assert.same({}, D.scratch())
  end)
end)

describe("docker-daemon: an image whose /opt is not a directory", function()
  -- pre-run on tag stops at read_config naming the reason; the tag keeps its
  -- image, no container and no dangling image is left.
  local function refused(tag, reason)
    local before = assert(D.id(tag))
    local dangling = D.dangling()
    local code, _, err = S.pht("pre-run -q " .. q("docker-daemon:" .. tag) .. " " .. S.station_args(1), D.env())
    assert.equal(1, code, err)
    assert.matches("pre-run failed at step read_config: ", err, 1, true)
    assert.matches(reason, err, 1, true)
    assert.equal(before, D.id(tag))
    assert.same({}, D.new_dangling(dangling))
    assert.same({}, D.scratch())
  end

  it("refuses /opt as a symlink, naming its target", function()
    local ok, why = D.ready(true)
    if not ok then return pending(why) end
    local tag = committed("rm -rf /opt && mkdir -p /srv/train && ln -s /srv/train /opt")
    refused(tag, '/opt is a symlink to "/srv/train" in image ' .. D.id(tag) .. "; a train's /opt is a directory")
  end)

  it("refuses an image without /opt", function()
    local ok, why = D.ready(true)
    if not ok then return pending(why) end
    local tag = committed("rm -rf /opt && echo marker > /marker")
    refused(tag, "image " .. D.id(tag) .. " has no /opt")
  end)
end)
