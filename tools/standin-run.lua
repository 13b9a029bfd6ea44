-- STAND-IN for `docker run` when no Docker daemon is at hand (tools/demo.sh).
--
--   lua5.4 tools/standin-run.lua IMAGE [TMPDIR]
--
-- Runs the train's entrypoint ON THIS HOST, not in a container: /opt of the
-- image (decrypted by pre-run) is extracted into a private temporary
-- directory, /opt/pht_train/entrypoint.sh runs under /bin/sh with $PHT_OPT
-- pointing at that copy, and the resulting /opt/pht_results goes back into the
-- image as a new layer, as `docker commit` would add it. Only for trains whose
-- entrypoint honours $PHT_OPT (the demo's does); it isolates nothing.
-- Needs the pht module on package.cpath (tools/demo.sh sets it).
local pht = require "pht"
local fs = require "pht.fs"
local train = require "pht.train"

local ref, tmpparent = arg[1], arg[2]
if not ref then
  io.stderr:write("usage: standin-run.lua IMAGE [TMPDIR]\n")
  os.exit(2)
end

local function die(msg)
  io.stderr:write("standin-run: ", msg, "\n")
  os.exit(1)
end

local img = assert(train.open_image(ref, tmpparent))
local tmp = assert(fs.mkdtemp(tmpparent))
local ok, err = pcall(function()
  local opt = tmp .. "/opt"
  assert(img:extract(train.OPT, opt))
  local entry = opt .. "/pht_train/entrypoint.sh"
  assert(fs.exists(entry), "the train has no /opt/pht_train/entrypoint.sh")
  local out, rerr = fs.sh("cd " .. fs.quote(tmp) .. " && PHT_OPT=" .. fs.quote(opt) .. " /bin/sh "
    .. fs.quote(entry))
  if not out then error("the entrypoint failed: " .. tostring(rerr)) end
  io.stderr:write(out)

  local entries = assert(fs.list_tree(opt .. "/pht_results"))
  local w = assert(img:writer({ tmpdir = tmpparent }))
  assert(w:add_dir(train.RESULTS, { opaque = true }))
  local files = {}
  for _, e in ipairs(entries) do
    if e.type == "dir" then assert(w:add_dir(train.RESULTS .. "/" .. e.path))
    elseif e.type == "file" then files[#files + 1] = e.path
    else error("the entrypoint left " .. e.path .. ", neither a file nor a directory") end
  end
  for _, p in ipairs(pht.walk_sort(files)) do
    assert(w:add_file(train.RESULTS .. "/" .. p, opt .. "/pht_results/" .. p))
  end
  local dest, tags = train.commit_target({ options = { image = ref }, image = img })
  assert(w:commit(dest, { tags = tags, history = "stand-in run: entrypoint executed on the host, not in a container" }))
end)
fs.remove_tree(tmp)
img:close()
if not ok then die(tostring(err)) end
