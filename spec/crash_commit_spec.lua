-- Crash-consistent commits: `pht pre-run` and `pht post-run`, writing over
-- their input, are killed with SIGKILL at many moments, on every transport
-- (docker-archive, oci, oci-archive, docker-daemon). After each kill the
-- image at the reference must open with every layer digest verified and be
-- exactly the old image (the same layers and the same train_config.json)
-- or exactly a new one (the verb's own top layer, every /opt file readable,
-- and for post-run a train `pht inspect` accepts); never a broken or mixed
-- one. After the loop a run that is not killed succeeds on the old image.
--
-- The moments are spread over the measured length of one whole run, from
-- its first instruction to past its end. PHT_CRASH_KILLS sets how many
-- (default 50 a verb and transport). The killed process is the `pht`
-- binary, the same whichever interpreter runs busted, so the loop runs under
-- Lua 5.4 only.
local pht = require "pht"
local h = require "helpers"
local S = require "wf_support"
local support = require "support"
local q = h.q

local KILLS = tonumber(os.getenv("PHT_CRASH_KILLS") or "") or 50

local function now()
  return tonumber(h.run("date +%s.%N"))
end

-- The state of the image at ref: its layer diff_ids and config text, or
-- nil and why it does not open.
local function state_of(ref)
  local img, err = pht.open_image(ref, { verify_layers = true })
  if not img then return nil, err end
  local ids = {}
  for _, l in ipairs(img:layers()) do ids[#ids + 1] = l.diff_id end
  local cfg, cerr = img:read_file("/opt/train_config.json")
  local top = img:layers()[#ids].created_by
  -- every file under /opt reads whole
  local files, bad = 0, nil
  for _, e in ipairs(assert(img:walk("/opt"))) do
    if e.type == "file" then
      local data, rerr = img:read_file("/opt/" .. e.path, 1073741824)
      if not data then bad = e.path .. ": " .. tostring(rerr) end
      files = files + 1
    end
  end
  img:close()
  if not cfg then return nil, "no train_config.json: " .. tostring(cerr) end
  if bad then return nil, "unreadable " .. bad end
  return { id = table.concat(ids, ",") .. "\n" .. cfg, top = top, files = files }
end

-- A transport's way to keep and restore a pristine copy of the image.
local transports = {
  ["docker-archive"] = function(dir, archive)
    local path = dir .. "/train.tar"
    h.run("cp " .. q(archive) .. " " .. q(path))
    local ref = "docker-archive:" .. path .. ":" .. S.repo_tag
    return ref, function(what)
      if what == "save" then h.run("cp " .. q(path) .. " " .. q(path .. ".old"))
      else h.run("cp " .. q(path .. ".old") .. " " .. q(path)) end
    end
  end,
  oci = function(dir, archive)
    local layout = dir .. "/layout"
    h.run("skopeo copy -q docker-archive:" .. q(archive .. ":" .. S.repo_tag) .. " oci:" .. q(layout .. ":latest"))
    return "oci:" .. layout .. ":latest", function(what)
      if what == "save" then h.run("rm -rf " .. q(layout .. ".old") .. " && cp -a " .. q(layout) .. " " .. q(layout .. ".old"))
      else h.run("rm -rf " .. q(layout) .. " && cp -a " .. q(layout .. ".old") .. " " .. q(layout)) end
    end
  end,
  ["oci-archive"] = function(dir, archive)
    local path = dir .. "/train.oci.tar"
    h.run("skopeo copy -q docker-archive:" .. q(archive .. ":" .. S.repo_tag) .. " oci-archive:" .. q(path .. ":latest"))
    return "oci-archive:" .. path .. ":latest", function(what)
      if what == "save" then h.run("cp " .. q(path) .. " " .. q(path .. ".old"))
      else h.run("cp " .. q(path .. ".old") .. " " .. q(path)) end
    end
  end,
  ["docker-daemon"] = function(dir, archive, name)
    local _, out = support.docker("load -q -i " .. q(archive))
    assert(out:find(S.repo_tag, 1, true), out)
    assert(support.docker("tag " .. q(S.repo_tag) .. " " .. q(name)))
    local old
    return "docker-daemon:" .. name, function(what)
      if what == "settle" then
        -- The engine may finish a load whose client was killed (all its
        -- bytes had arrived) and move the tag a moment later: wait until
        -- the tag has named the same image for 1.5 s (at most 15 s).
        local last, same = nil, 0
        for _ = 1, 50 do
          local _, id = support.docker("image inspect --format '{{.Id}}' " .. q(name))
          if id == last then same = same + 1 else same, last = 0, id end
          if same >= 5 then break end
          h.sh("sleep 0.3")
        end
      elseif what == "save" then
        local ok, id = support.docker("image inspect --format '{{.Id}}' " .. q(name))
        assert(ok, id)
        old = id:match("sha256:%x+")
        assert(support.docker("tag " .. q(old) .. " " .. q(name .. "-old")))
      else
        assert(support.docker("tag " .. q(old) .. " " .. q(name)))
      end
    end
  end,
}

-- Kill `pht VERB ref ARGS` KILLS times; returns how many kills found the old
-- image and how many a new one.
local function kill_loop(label, verb, ref, args, keep, top)
  local cmd = ("%s %s -q %s %s"):format(q(S.bin), verb, q(ref), args)
  keep("save")
  local old = assert(state_of(ref))
  -- one whole run: its length, and what a new image looks like
  local t0 = now()
  local code, _, err = S.pht(verb .. " -q " .. q(ref) .. " " .. args)
  local span = now() - t0
  assert.equal(0, code, err)
  local new = assert(state_of(ref))
  assert.equal(top, new.top)
  assert.not_equal(old.id, new.id)
  keep("restore")

  local saw_old, saw_new = 0, 0
  math.randomseed(os.time())
  for i = 1, KILLS do
    local delay = math.random() * span * 1.3
    local out = h.run(("(exec %s) >/dev/null 2>&1 & p=$!; sleep %.3f; kill -KILL $p 2>/dev/null; wait $p; echo $?")
      :format(cmd, delay))
    if label == "docker-daemon" then keep("settle") end
    local st, why = state_of(ref)
    local at = ("%s %s, kill %d after %.3f s (exit %s)"):format(label, verb, i, delay, out:match("(%d+)%s*$") or "?")
    assert(st, at .. ": the image does not open whole: " .. tostring(why))
    if st.id == old.id then
      saw_old = saw_old + 1
    else
      assert.equal(top, st.top, at .. ": neither the old image nor a new one")
      assert.equal(new.files, st.files, at .. ": a new image with other files")
      if verb == "post-run" then
        local c, o, e = S.pht("inspect " .. q(ref))
        assert.equal(0, c, at .. ": pht inspect rejects the new image: " .. o .. e)
      end
      saw_new = saw_new + 1
      keep("restore")
    end
  end
  -- a run after the kills succeeds on the old image
  if label == "docker-daemon" then keep("settle") end
  keep("restore")
  code, _, err = S.pht(verb .. " -q " .. q(ref) .. " " .. args)
  assert.equal(0, code, label .. " " .. verb .. " after the kills: " .. err)
  assert.equal(top, assert(state_of(ref)).top)
  return saw_old, saw_new
end

for _, name in ipairs({ "docker-archive", "oci", "oci-archive", "docker-daemon" }) do
  describe(name .. ": pre-run and post-run killed with SIGKILL", function()
    local dir, tag, ref, keep
    setup(function()
      if jit then return end
      if name == "docker-daemon" and not support.docker_available() then return end
      dir = h.tmpdir()
      tag = support.unique_name("crash") .. ":latest"
      ref, keep = transports[name](dir, h.vectors .. "/" .. S.stages[0], tag)
    end)
    teardown(function()
      if name == "docker-daemon" and tag then
        for _, t in ipairs({ tag, tag:gsub(":latest$", "") .. ":latest-old" }) do
          support.docker("rmi -f " .. q(t))
        end
        support.docker("image prune -f")
      end
    end)

    it("leaves the old train or the pre-run's image, and pre-run runs again", function()
      if jit then return pending("the pht binary is the one the Lua 5.4 run kills") end
      if not ref then return pending(select(2, support.docker_available())) end
      local o, n = kill_loop(name, "pre-run", ref, S.station_args(1), keep, "libpht pre-run")
      assert.is_true(o > 0 and n > 0, ("kills on both sides of the commit: %d old, %d new"):format(o, n))
    end)

    it("leaves the pre-run's image or the sealed train, and post-run runs again", function()
      if jit then return pending("the pht binary is the one the Lua 5.4 run kills") end
      if not ref then return pending(select(2, support.docker_available())) end
      -- the image is now the pre-run's output (the last test's rerun)
      local o, n = kill_loop(name, "post-run", ref, S.station_args(1), keep, "libpht post-run")
      assert.is_true(o > 0 and n > 0, ("kills on both sides of the commit: %d old, %d new"):format(o, n))
    end)
  end)
end
