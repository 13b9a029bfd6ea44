-- One pass per byte: writer:add_encrypted and writer:add_decrypted move a
-- file into an image entry while hashing it, checked against the openssl
-- command line and the e_d/e_h builders fed the same bytes; pre-run writes
-- no plaintext file, and a pre-run killed in the middle leaves its input as
-- it was and no plaintext behind.
local h = require "helpers"
local pht = require "pht"
local S = require "wf_support"

local q = h.q
local MiB = 1024 * 1024

-- A writable copy of a reference train and its docker-archive reference.
local function fixture(dir)
  local path = dir .. "/img.tar"
  h.run("cp " .. q(h.vectors .. "/stage1-station_1-post.tar") .. " " .. q(path))
  return "docker-archive:" .. path .. ":pht-bench/ref-0:latest"
end

local function random_file(path, n)
  h.run("head -c " .. n .. " /dev/urandom > " .. q(path))
  return path
end

local function sha256(path) return h.sha256_file(path) end

-- The entry at path of the image, written to a file.
local function entry_to_file(img, path, out)
  h.write(out, assert(img:read_file(path, 64 * MiB)))
  return out
end

local SID = string.rep("\7", 32)
local SIZES = { 0, 1, 15, 16, 17, 70000, 5 * MiB + 3 }

describe("writer:add_encrypted", function()
  it("writes IV || AES-256-CBC that openssl enc -d decrypts, and hashes the same plaintext", function()
    local dir = h.tmpdir()
    local ref = fixture(dir)
    local key = pht.new_symkey()
    local img = assert(pht.open_image(ref))
    local w = assert(img:writer())
    local hasher, want = pht.results_hasher(SID), pht.results_hasher(SID)
    local reported, total = 0, 0
    for i, n in ipairs(SIZES) do
      local src = random_file(dir .. "/p" .. i, n)
      assert(w:add_encrypted("/opt/pht_results/f" .. i, src, key, { hash = hasher,
        progress = function(bytes) reported = reported + bytes end }))
      assert(want:update_file(src))
      -- bytes fed between the files go into the stream in order, small or
      -- larger than the hashing thread's slots
      local between = i == 3 and h.read(random_file(dir .. "/b" .. i, 600000)) or ("after " .. i)
      assert(hasher:update(between))
      assert(want:update(between))
      total = total + n
    end
    assert(w:commit(ref))
    img:close()
    assert.equal(pht.hex(want:digest()), pht.hex(hasher:digest()))
    assert.equal(total, reported)

    local out = assert(pht.open_image(ref))
    local khex = pht.hex(key:export())
    for i, n in ipairs(SIZES) do
      local st = out:stat("/opt/pht_results/f" .. i)
      assert.equal(16 + (math.floor(n / 16) + 1) * 16, st.size)
      local ct = h.read(entry_to_file(out, "/opt/pht_results/f" .. i, dir .. "/c" .. i))
      h.write(dir .. "/body", ct:sub(17))
      h.run("openssl enc -d -aes-256-cbc -K " .. khex .. " -iv " .. pht.hex(ct:sub(1, 16)) .. " -in "
        .. q(dir .. "/body") .. " -out " .. q(dir .. "/d" .. i))
      assert.equal(sha256(dir .. "/p" .. i), sha256(dir .. "/d" .. i), "size " .. n)
    end
    out:close()
  end)

  it("uses a fresh IV for every entry", function()
    local dir = h.tmpdir()
    local ref = fixture(dir)
    local key = pht.new_symkey()
    local img = assert(pht.open_image(ref))
    local w = assert(img:writer())
    local src = random_file(dir .. "/p", 100)
    assert(w:add_encrypted("/opt/a", src, key))
    assert(w:add_encrypted("/opt/b", src, key))
    assert(w:commit(ref))
    img:close()
    local out = assert(pht.open_image(ref))
    assert.are_not.equal(out:read_file("/opt/a"):sub(1, 16), out:read_file("/opt/b"):sub(1, 16))
    out:close()
  end)
end)

describe("writer:add_decrypted", function()
  local dir, ref, key, khex
  before_each(function()
    dir = h.tmpdir()
    ref = fixture(dir)
    key = pht.new_symkey()
    khex = pht.hex(key:export())
  end)

  -- IV || openssl enc of plain: the protocol's ciphertext, made by the CLI.
  local function openssl_cipher(plain, out)
    local iv = pht.random(16)
    h.run("openssl enc -aes-256-cbc -K " .. khex .. " -iv " .. pht.hex(iv) .. " -in " .. q(plain)
      .. " -out " .. q(out .. ".body"))
    h.write(out, iv .. h.read(out .. ".body"))
    return out
  end

  it("writes the exact plaintext of what openssl enc made, its size in the header, hashed on the way", function()
    local img = assert(pht.open_image(ref))
    local w = assert(img:writer())
    local hasher, want = pht.results_hasher(SID), pht.results_hasher(SID)
    local reported, total = 0, 0
    for i, n in ipairs(SIZES) do
      local plain = random_file(dir .. "/p" .. i, n)
      assert(w:add_decrypted("/opt/pht_results/f" .. i, openssl_cipher(plain, dir .. "/c" .. i), key,
        { hash = hasher, progress = function(bytes) reported = reported + bytes end }))
      assert(want:update_file(plain))
      total = total + n
    end
    assert(w:commit(ref))
    img:close()
    assert.equal(pht.hex(want:digest()), pht.hex(hasher:digest()))
    assert.equal(total, reported)
    local out = assert(pht.open_image(ref))
    for i, n in ipairs(SIZES) do
      assert.equal(n, out:stat("/opt/pht_results/f" .. i).size)
      entry_to_file(out, "/opt/pht_results/f" .. i, dir .. "/d" .. i)
      assert.equal(sha256(dir .. "/p" .. i), sha256(dir .. "/d" .. i), "size " .. n)
    end
    out:close()
  end)

  it("refuses a ciphertext under another key before it writes the entry", function()
    local plain = random_file(dir .. "/p", 3 * MiB)
    local ct = openssl_cipher(plain, dir .. "/c")
    local img = assert(pht.open_image(ref))
    local w = assert(img:writer())
    -- Another key whose last block does not unpad (one in about 256 does: CBC
    -- has no MAC, e_h and e_d catch those).
    local tail, other = h.read(ct):sub(-32), nil
    repeat other = pht.new_symkey() until other:decrypt(tail) == nil
    local ok, err, code = w:add_decrypted("/opt/x", ct, other)
    assert.is_nil(ok)
    assert.equal("ECRYPTO", code)
    assert.matches("bad decrypt", err)
    assert(w:commit(ref))
    img:close()
    local out = assert(pht.open_image(ref))
    assert.is_nil(out:stat("/opt/x"))
    out:close()
  end)

  it("refuses a ciphertext that is not an IV and whole blocks", function()
    local ct = openssl_cipher(random_file(dir .. "/p", 100), dir .. "/c")
    h.write(ct, h.read(ct):sub(1, -2))
    local img = assert(pht.open_image(ref))
    local w = assert(img:writer())
    local ok, err, code = w:add_decrypted("/opt/x", ct, key)
    assert.is_nil(ok)
    assert.equal("ECRYPTO", code)
    assert.matches("not an IV and whole AES blocks", err)
    img:close()
  end)

  it("stops with the message of a progress function that raises", function()
    local ct = openssl_cipher(random_file(dir .. "/p", 2 * MiB), dir .. "/c")
    local img = assert(pht.open_image(ref))
    local w = assert(img:writer())
    local ok, err = w:add_decrypted("/opt/x", ct, key, { progress = function() error("enough") end })
    assert.is_nil(ok)
    assert.matches("progress callback failed: .*enough", err)
    img:close()
  end)
end)

-- Gzip every plain layer blob of the OCI layout dir (its manifest, and the
-- index that names it, rewritten): the same image, compressed.
local function gzip_layers(dir)
  local function blob(d) return dir .. "/blobs/sha256/" .. d:sub(8) end
  local index = pht.json_decode(h.read(dir .. "/index.json"))
  local desc = index.manifests[1]
  local m = pht.json_decode(h.read(blob(desc.digest)))
  for _, layer in ipairs(m.layers) do
    if not layer.mediaType:find("gzip", 1, true) then
      h.run("gzip -n -c " .. q(blob(layer.digest)) .. " > " .. q(dir .. "/layer.gz"))
      local d = "sha256:" .. h.sha256_file(dir .. "/layer.gz")
      h.run("mv " .. q(dir .. "/layer.gz") .. " " .. q(blob(d)))
      layer.digest, layer.size = d, tonumber(h.run("stat -c %s " .. q(blob(d))))
      layer.mediaType = layer.mediaType:gsub("%.tar$", ".tar+gzip"):gsub("diff%.tar$", "diff.tar.gzip")
    end
  end
  local text = pht.json_encode(m)
  h.write(dir .. "/m.json", text)
  local md = "sha256:" .. h.sha256_file(dir .. "/m.json")
  h.run("mv " .. q(dir .. "/m.json") .. " " .. q(blob(md)))
  desc.digest, desc.size = md, #text
  h.write(dir .. "/index.json", pht.json_encode(index))
end

describe("add_encrypted and add_decrypted from a file of an image (opts.image)", function()
  -- An image with the plaintext files p1.. and their ciphertexts c1.. under
  -- /opt/pht_results (written by libpht: a plain layer), as docker-archive
  -- and as an OCI layout whose layers are gzip.
  local dir, key, khex, plain_ref, gzip_ref
  setup(function()
    dir = h.tmpdir()
    key = pht.new_symkey()
    khex = pht.hex(key:export())
    plain_ref = fixture(dir)
    local img = assert(pht.open_image(plain_ref))
    local w = assert(img:writer())
    for i, n in ipairs(SIZES) do
      local p = random_file(dir .. "/p" .. i, n)
      assert(w:add_file("/opt/pht_results/p" .. i, p))
      assert(w:add_encrypted("/opt/pht_results/c" .. i, p, key))
    end
    assert(w:commit(plain_ref))
    img:close()
    h.run("skopeo copy -q " .. q(plain_ref) .. " " .. q("oci:" .. dir .. "/gz:latest"))
    gzip_layers(dir .. "/gz")
    gzip_ref = "oci:" .. dir .. "/gz:latest"
  end)
  teardown(function() h.run("rm -rf " .. q(dir)) end)

  for _, which in ipairs({ "plain", "gzip" }) do
    it("reads the file " .. (which == "plain" and "in place" or "through the gzip stream")
      .. ": openssl decrypts what it encrypts, and it decrypts to the plaintext", function()
      local src = assert(pht.open_image(which == "plain" and plain_ref or gzip_ref))
      assert.equal(which == "plain", src:in_place("/opt/pht_results"))
      local out = dir .. "/out-" .. which .. ".tar"
      local w = assert(src:writer())
      local enc_h, dec_h, want = pht.results_hasher(SID), pht.results_hasher(SID), pht.results_hasher(SID)
      for i in ipairs(SIZES) do
        assert(w:add_encrypted("/opt/e" .. i, "/opt/pht_results/p" .. i, key, { image = src, hash = enc_h }))
        assert(w:add_decrypted("/opt/d" .. i, "/opt/pht_results/c" .. i, key, { image = src, hash = dec_h }))
        assert(want:update_file(dir .. "/p" .. i))
      end
      assert(w:commit("docker-archive:" .. out .. ":t/out:latest"))
      src:close()
      local wanted = pht.hex(want:digest())
      assert.equal(wanted, pht.hex(enc_h:digest()))
      assert.equal(wanted, pht.hex(dec_h:digest()))
      local img = assert(pht.open_image("docker-archive:" .. out .. ":t/out:latest"))
      for i, n in ipairs(SIZES) do
        local c = entry_to_file(img, "/opt/e" .. i, dir .. "/e" .. i)
        local data = h.read(c)
        h.write(c .. ".body", data:sub(17))
        h.run("openssl enc -d -aes-256-cbc -K " .. khex .. " -iv " .. pht.hex(data:sub(1, 16)) .. " -in "
          .. q(c .. ".body") .. " -out " .. q(c .. ".plain"))
        assert.equal(sha256(dir .. "/p" .. i), sha256(c .. ".plain"), "encrypted, size " .. n)
        entry_to_file(img, "/opt/d" .. i, dir .. "/d" .. i)
        assert.equal(sha256(dir .. "/p" .. i), sha256(dir .. "/d" .. i), "decrypted, size " .. n)
      end
      img:close()
    end)
  end

  it("names the image path when it is not a regular file of the image", function()
    local src = assert(pht.open_image(plain_ref))
    local w = assert(src:writer())
    local ok, err = w:add_encrypted("/opt/x", "/opt/pht_results/none", key, { image = src })
    assert.is_nil(ok)
    assert.matches("/opt/pht_results/none", err, 1, true)
    src:close()
  end)
end)

-- The bytes a fresh interpreter writes (/proc/self/io) while it opens ref
-- (tmpdir dir), adds src encrypted as /opt/big to a writer made with
-- writer_opts (Lua source) and whatever `more` adds (Lua source using w),
-- and commits to target.
local function bytes_written(ref, dir, writer_opts, src, more, target)
  local lua = jit and "luajit" or "lua5.4"
  local script = ([[
    package.cpath = %q
    local pht = require "pht"
    local function written()
      return tonumber(io.open("/proc/self/io"):read("*a"):match("write_bytes: (%%d+)"))
    end
    local img = assert(pht.open_image(%q, { tmpdir = %q }))
    local w0 = written()
    local w = assert(img:writer(%s))
    assert(w:add_encrypted("/opt/big", %q, pht.new_symkey()))
    %s
    assert(w:commit(%q))
    print("written " .. (written() - w0))
  ]]):format(package.cpath, ref, dir, writer_opts, src, more, target)
  return tonumber(h.run(lua .. " -e " .. q(script)):match("written (%d+)"))
end

describe("an OCI commit of the new layer", function()
  it("names the writer's layer file as its blob instead of copying it: about 1x written", function()
    local dir = h.tmpdir()
    local ref = fixture(dir)
    local oci = "oci:" .. dir .. "/layout:latest"
    h.run("skopeo copy -q " .. q(ref) .. " " .. q(oci))
    local src = random_file(dir .. "/p", 32 * MiB)
    local written = bytes_written(oci, dir, "{}", src, "", oci)
    assert.is_true(written < 1.5 * 32 * MiB, "wrote " .. written .. " bytes for a 32 MiB layer")
    local img = assert(pht.open_image(oci))
    assert.equal(16 + 32 * MiB + 16, img:stat("/opt/big").size)
    img:close()
    h.run("skopeo inspect " .. q(oci) .. " >/dev/null")
  end)
end)

describe("a docker-archive commit of a writer bound for it (opts.dest)", function()
  -- Write 32 MiB into a new layer and commit into the archive; the bytes the
  -- process wrote, and the archive as docker load and skopeo see it.
  local function commit_into(dir, ref, dest_opt, target)
    target = target or ref
    local src = random_file(dir .. "/p", 32 * MiB)
    local opts = dest_opt and string.format("{ dest = %q }", target) or "{}"
    return bytes_written(ref, dir, opts, src, [=[assert(w:add_bytes("/opt/small.txt", "small\n"))]=], target)
  end

  it("builds the archive around the new layer instead of copying it in: about 1x written", function()
    local dir = h.tmpdir()
    local ref = fixture(dir)
    local written = commit_into(dir, ref, true)
    assert.is_true(written < 1.3 * 32 * MiB, "wrote " .. written .. " bytes for a 32 MiB layer")
    -- the mode of any archive libpht writes, not the layer file's 0600
    assert.equal("644", h.run("stat -c %a " .. q(dir .. "/img.tar")):match("%d+"))
    local img = assert(pht.open_image(ref))
    assert.equal(16 + 32 * MiB + 16, img:stat("/opt/big").size)
    assert.equal("small\n", img:read_file("/opt/small.txt"))
    img:close()
    -- what other tools make of it: GNU tar lists it, skopeo reads it, a copy to OCI verifies every digest
    assert.is_true(h.sh("tar -tf " .. q(dir .. "/img.tar") .. " manifest.json >/dev/null"))
    h.run("skopeo inspect " .. q(ref) .. " >/dev/null")
    h.run("skopeo copy -q " .. q(ref) .. " " .. q("oci:" .. dir .. "/check:latest"))
  end)

  it("loads into the Docker engine", function()
    local support = require "support"
    local ok, why = support.docker_available()
    if not ok then return pending(why) end
    local dir = h.tmpdir()
    local ref = fixture(dir)
    local name = support.unique_name("inplace") .. ":latest"
    local out = dir .. "/out.tar"
    commit_into(dir, ref, true, "docker-archive:" .. out .. ":" .. name)
    finally(function() support.docker("rmi -f " .. q(name)) end)
    local ok, msg = support.docker("load -q -i " .. q(out))
    assert.is_true(ok, msg)
    local img = assert(pht.open_image("docker-archive:" .. out .. ":" .. name))
    local want = #img:layers()
    img:close()
    local _, layers = support.docker("image inspect -f '{{len .RootFS.Layers}}' " .. q(name))
    assert.equal(want, tonumber(layers:match("%d+")))
  end)

  it("without opts.dest copies the layer in: the archive is the same image", function()
    local dir = h.tmpdir()
    local ref = fixture(dir)
    local written = commit_into(dir, ref, false)
    assert.is_true(written > 1.8 * 32 * MiB, "wrote " .. written .. " bytes")
    local img = assert(pht.open_image(ref))
    assert.equal(16 + 32 * MiB + 16, img:stat("/opt/big").size)
    img:close()
  end)
end)

describe("a progress function of add_encrypted", function()
  it("cannot close the writer, key or hash the call is using: they look closed to it", function()
    local dir = h.tmpdir()
    local ref = fixture(dir)
    local key, hasher = pht.new_symkey(), pht.results_hasher(SID)
    local img = assert(pht.open_image(ref))
    local w = assert(img:writer())
    local src = random_file(dir .. "/p", 6 * MiB)
    local raised
    assert(w:add_encrypted("/opt/big", src, key, { hash = hasher, progress = function()
      w:close()
      key:close()
      hasher:close()
      raised = raised or select(2, pcall(hasher.update, hasher, "x"))
    end }))
    assert.matches("attempt to use a closed pht.hash", raised)
    local want = pht.results_hasher(SID)
    assert(want:update_file(src))
    assert.equal(pht.hex(want:digest()), pht.hex(hasher:digest()))
    assert(w:commit(ref))
    img:close()
  end)
end)

-- Every regular file below dir: { path = sha256 }.
local function file_hashes(dir)
  local out = {}
  for path in h.run("find " .. q(dir) .. " -type f"):gmatch("[^\n]+") do out[path] = sha256(path) end
  return out
end

-- A station script (in dir) that lists the files under tmp right after
-- pre-run's decrypt_results into the file it returns first.
local function watch_script(dir, tmp)
  local seen, script = dir .. "/seen", dir .. "/watch.lua"
  h.write(script, ([[
return { pre_run = function(wf)
  wf:after(function(ctx, step)
    if step.name ~= "decrypt_results" then return end
    local p = io.popen("find %s -type f")
    local f = io.open(%q, "w")
    f:write(p:read("*a"))
    f:close()
    p:close()
  end)
end }
]]):format(q(tmp), seen))
  return seen, script
end

describe("pht pre-run in one pass", function()
  it("writes no file at all for results in a plain layer: it decrypts them where they are", function()
    local _, ref = S.copy_stage(1)
    local tmp = h.tmpdir()
    local scratch = h.tmpdir()
    local seen, script = watch_script(scratch, tmp)
    local code, _, err = S.pht("pre-run -q " .. q(ref) .. " --tmpdir " .. q(tmp) .. " --script " .. q(script)
      .. " " .. S.station_args(2))
    assert.equal(0, code, err)
    local listed = h.read(seen)
    assert.is_nil(listed:find("results%.enc/"), listed)
    assert.is_nil(listed:find("%.plain"), listed)
    assert.equal("", h.run("ls -A " .. q(tmp)))
  end)

  it("extracts only the ciphertext of results in a gzip layer, and writes no plaintext file", function()
    local path = S.copy_stage(1)
    local tmp, scratch = h.tmpdir(), h.tmpdir()
    local layout = scratch .. "/gz"
    h.run("skopeo copy -q " .. q("docker-archive:" .. path .. ":" .. S.repo_tag) .. " " .. q("oci:" .. layout .. ":latest"))
    gzip_layers(layout)
    local seen, script = watch_script(scratch, tmp)
    local code, _, err = S.pht("pre-run -q " .. q("oci:" .. layout .. ":latest") .. " --tmpdir " .. q(tmp)
      .. " --script " .. q(script) .. " " .. S.station_args(2))
    assert.equal(0, code, err)
    local listed = h.read(seen)
    assert.matches("results%.enc/", listed) -- the hook ran while the extracted ciphertext was there
    assert.is_nil(listed:find("%.plain"), listed)
    assert.equal("", h.run("ls -A " .. q(tmp)))
  end)

  it("killed in the middle leaves the input unchanged and no plaintext behind", function()
    local path, ref = S.copy_stage(1)
    -- A large result (it fails verify_result_hash later; the kill comes first).
    local dir = h.tmpdir()
    local plain = random_file(dir .. "/big", 150 * MiB)
    local symkey = S.symkey(ref, 1, "station_2")
    S.tamper(ref, function(w) assert(w:add_encrypted("/opt/pht_results/big.bin", plain, symkey)) end)
    local before = h.sha256_file(path)
    local tmp = h.tmpdir()
    local log = dir .. "/progress"
    local pid = h.run("sh -c " .. q(q(S.bin) .. " pre-run -q --progress=json " .. q(ref) .. " --tmpdir " .. q(tmp)
      .. " " .. S.station_args(2) .. " >/dev/null 2>" .. q(log) .. " & echo $!")):match("%d+")
    -- Wait until it decrypts the results (its progress says so), then kill it.
    local started = false
    for _ = 1, 200 do
      if h.sh("grep -q '\"step\": *\"decrypt_results\"' " .. q(log)) then
        started = true
        break
      end
      h.sh("sleep 0.05")
    end
    h.sh("kill -9 " .. pid)
    h.sh("while kill -0 " .. pid .. " 2>/dev/null; do sleep 0.05; done")
    assert.is_true(started)
    assert.equal(before, h.sha256_file(path))
    local want = sha256(plain)
    for file, sum in pairs(file_hashes(tmp)) do
      assert.are_not.equal(want, sum, file .. " holds the plaintext")
      assert.is_nil(file:find("%.plain$"), file)
    end
    -- Nothing beside the archive either (a staged output would sit there).
    for file, sum in pairs(file_hashes(path:match("^(.*)/[^/]+$"))) do
      assert.are_not.equal(want, sum, file .. " holds the plaintext")
    end
  end)
end)

describe("the open's digest checks beside the steps (verify_behind)", function()
  -- The stock workflows open with verify_behind: the layer holding the results
  -- is hashed on a thread while encrypt_files reads it in place, and
  -- write_image's commit waits for the verdict before it writes.
  it("post-run refuses at write_image a train whose results layer does not match its diff_id, input unchanged",
    function()
    local path, ref = S.copy_stage(0)
    local code, _, err = S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(1))
    assert.equal(0, code, err)
    local marker = "results bytes the run wrote " .. string.rep("r", 5 * MiB)
    S.tamper(ref, function(w) assert(w:add_bytes("/opt/pht_results/out.txt", marker)) end, "the run")
    -- same length, so every header and offset stays where the open finds it
    h.replace_bytes(path, "results bytes the run wrote", "RESULTS bytes the run wrote")
    local before = h.sha256_file(path)
    local tmp = h.tmpdir()
    code, _, err = S.pht("post-run " .. q(ref) .. " --tmpdir " .. q(tmp) .. " " .. S.station_args(1))
    assert.equal(3, code, err) -- an image that cannot be read, as when the open found it
    assert.matches("post-run failed at step write_image: ", err, 1, true)
    local _, said = err:gsub("does not match its diff_id", "")
    assert.equal(1, said, err)
    assert.equal(before, h.sha256_file(path))
    assert.equal("", h.run("ls -A " .. q(tmp)))
    -- the listing of the archive's directory: no temporary file left beside it
    local listing = h.run("ls -A " .. q(path:match("^(.*)/")))
    assert.equal("stage0-built.tar", (listing:gsub("%s+$", "")))
  end)
end)
