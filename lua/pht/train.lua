-- The train image (doc/protocol.md §1): where its parts are under /opt,
-- opening it, reading its configuration, listing its trees, finding the
-- layer pre-run wrote, and writing it back. Every function returns its
-- result, or nil and a message an operator can act on; none prints.
--
-- The other protocol modules sit beside this one: pht.files (the train's
-- files and their crypto), pht.route (the stops), pht.checks (every check of
-- §7 and §9), pht.ref (image references); doc/architecture.md has the map.
local pht = require "pht"
local fs = require "pht.fs"
local ref = require "pht.ref"

local M = {}

M.OPT = "/opt"
M.CONFIG = "/opt/train_config.json"
M.TRAIN = "/opt/pht_train"
M.RESULTS = "/opt/pht_results"
M.USER_KEY = "/opt/user_sym_key.key"
M.QUERY = "query.json"
M.MAX_CONFIG = 16 * 1024 * 1024
M.MAX_USER_KEY = 64 * 1024 -- a wrapped key for any RSA size fits

-- The history line pre-run writes on its layer. Post-run builds its output
-- on the layers below the last layer carrying it, so the plaintext layer and
-- everything the run added above it are dropped.
M.PRE_RUN_MARK = pht.PRE_RUN_MARK -- "libpht pre-run", from the core

local fmt = string.format

-- Reading ------------------------------------------------------------------------

-- Where the opens below keep the index cache of compressed layers
-- (doc/images.md): $PHT_CACHE_DIR ("" turns it off), else
-- $XDG_CACHE_HOME/libpht/layers, else ~/.cache/libpht/layers.
function M.cache_dir()
  local dir = os.getenv("PHT_CACHE_DIR")
  if dir then return dir ~= "" and dir or nil end
  local xdg, home = os.getenv("XDG_CACHE_HOME"), os.getenv("HOME")
  if xdg and xdg ~= "" then return xdg .. "/libpht/layers" end
  if home and home ~= "" then return home .. "/.cache/libpht/layers" end
  return nil
end

-- The pht.open_image options beyond tmpdir and verify_layers that a
-- workflow's options carry: options.registry (a table) and
-- options.docker_timeout.
function M.open_extra(options)
  local o = {}
  for k, v in pairs(options.registry or {}) do o[k] = v end
  o.docker_timeout = options.docker_timeout
  return o
end

-- verify_layers: hash every layer at open (default: the layers /opt reads).
-- extra (optional): more pht.open_image options, as M.open_extra makes them
-- from a workflow's options: how a docker:// image's registry is reached
-- (creds, auth_file, cert_dir, tls_verify, platform) and a docker-daemon
-- image's docker_timeout.
function M.open_image(reference, tmpdir, verify_layers, extra)
  local o = { tmpdir = tmpdir, verify_layers = verify_layers, cache_dir = M.cache_dir() }
  for k, v in pairs(extra or {}) do o[k] = v end
  local img, err = pht.open_image(reference, o)
  if not img then
    -- the library's message starts with the reference: name it once
    err = tostring(err)
    if err:sub(1, #reference + 2) == reference .. ": " then err = err:sub(#reference + 3) end
    return nil, fmt("cannot open %s: %s", reference, err)
  end
  return img
end

-- A master image the station trusts (doc/station-guide.md, "Trusted master
-- images"), opened without its index: the check compares its layers'
-- diff_ids only, so no layer of it is read. reference as a command-line
-- IMAGE (pht.ref.from_argument: a bare name or sha256:HEX is the Docker
-- engine's); extra as for M.open_image.
function M.open_master(reference, tmpdir, extra)
  local r, rerr = ref.from_argument(reference)
  if not r then return nil, fmt("master image %s: %s", tostring(reference), tostring(rerr)) end
  reference = r
  local o = { tmpdir = tmpdir, no_index = true }
  for k, v in pairs(extra or {}) do o[k] = v end
  local img, err = pht.open_image(reference, o)
  if not img then return nil, fmt("cannot open the master image %s: %s", reference, tostring(err)) end
  return img
end

function M.read_config(img)
  local text, err = img:read_file(M.CONFIG, M.MAX_CONFIG)
  if not text then return nil, fmt("cannot read %s: %s", M.CONFIG, tostring(err)) end
  local cfg, perr = pht.parse_config(text)
  if not cfg then return nil, fmt("%s is not a valid train config: %s", M.CONFIG, tostring(perr)) end
  return cfg
end

-- Entries under dir in Docker's walk order ({} when dir is absent).
function M.list(img, dir)
  local st = img:stat(dir)
  if not st then return {} end
  if st.type ~= "dir" then return nil, fmt("%s is not a directory", dir) end
  local entries, err = img:walk(dir)
  if not entries then return nil, fmt("cannot list %s: %s", dir, tostring(err)) end
  return entries
end

-- The layer index (1-based) of the last layer pre-run wrote, or nil; and
-- the number of layers.
function M.pre_run_layer(img)
  local layers = img:layers()
  for i = #layers, 1, -1 do
    if layers[i].created_by == M.PRE_RUN_MARK then return i, #layers end
  end
  return nil, #layers
end

-- Writing ------------------------------------------------------------------------

-- Where a workflow writes and which names go there: the output if one was
-- given, else the input in place. A docker-archive reference without a
-- NAME gets the names the input image carried, so they move to the new
-- image (and an untagged old image is not left behind in the archive).
function M.commit_target(ctx)
  local dest = ctx.options.output or ctx.options.image
  if ref.unnamed_archive(dest) then
    local tags = ref.repo_tags(ctx.image)
    if #tags > 0 then return dest, tags end
  end
  return dest, nil
end

-- Report the progress of writer w to ctx's step (ctx:count_bytes), when
-- someone listens. The total is an estimate: the bytes of the files
-- (records with .src) of every list in `lists` (or, for a number, that
-- many bytes already in the new layer), once into the new layer and once to
-- the destination, plus the base layers `base` (an image; its first `keep`
-- layers, all when nil) when the destination is a docker-archive, which
-- copies them.
function M.write_progress(ctx, w, lists, base, keep)
  local add = ctx:count_bytes(function()
    local n = 0
    if type(lists) == "number" then
      n = lists
    else
      for _, list in ipairs(lists) do
        for _, f in ipairs(list) do
          local fh = f.src and io.open(f.src, "rb")
          if fh then
            n = n + (fh:seek("end") or 0)
            fh:close()
          end
        end
      end
      n = 2 * n
    end
    local dest = M.commit_target(ctx)
    local r = pht.parse_ref(dest)
    if r and r.transport == "docker-archive" and base then
      for i, l in ipairs(base:layers()) do
        if keep and i > keep then break end
        n = n + (l.diff_size > 0 and l.diff_size or l.size)
      end
    end
    return n > 0 and n or nil
  end)
  if add then w:set_progress(add) end
end

-- Finish a writer: commit it to the commit target with opts (history,
-- comment, ...) unless adding entries failed already (ok false, werr why),
-- then close it. ctx.options.runtime_config (an image_writer:set_config
-- spec, optional) changes the runtime config first: pht run gives post-run
-- the train's own back. Sets ctx.written; true, or nil and a message naming
-- the target.
function M.commit(ctx, w, ok, werr, opts)
  local dest, tags = M.commit_target(ctx)
  if ok and ctx.options.runtime_config then ok, werr = w:set_config(ctx.options.runtime_config) end
  if ok then
    opts.tags = tags
    ok, werr = w:commit(dest, opts)
  end
  w:close()
  if not ok then return nil, fmt("cannot write %s: %s", dest, tostring(werr)) end
  ctx.written = dest
  return true
end

-- The attributes of path in img for a writer's add_*, or nil when absent.
local function attrs_of(img, path)
  local st = img:stat(path)
  if not st then return nil end
  return st, { mode = st.mode, uid = st.uid, gid = st.gid, mtime = st.mtime }
end

-- Start a new layer that restates the train's paths (img:protocol_top):
-- /opt as img has it. true, or nil and a message.
function M.restate_opt(w, img)
  local st, a = attrs_of(img, M.OPT)
  if not st or st.type ~= "dir" then return nil, "the train has no /opt directory" end
  local ok, err = w:add_dir(M.OPT, a)
  if not ok then return nil, fmt("cannot add %s: %s", M.OPT, tostring(err)) end
  return true
end

-- Finish such a layer: the config and the creator's wrapped key copied as
-- img holds them (deleted when it has none), and, when opts.results is a
-- listing (the results were not written into it), /opt/pht_results as an
-- opaque directory with the listing's directories, or deleted. The trees
-- written into the layer are opaque already (M.write_dirs).
function M.restate(w, img, opts)
  local copies = { { M.CONFIG, M.MAX_CONFIG }, { M.USER_KEY, M.MAX_USER_KEY } }
  for _, c in ipairs(copies) do
    local path, max = c[1], c[2]
    local st, a = attrs_of(img, path)
    local ok, err
    if st and st.type == "file" then
      local data, rerr = img:read_file(path, max)
      if not data then return nil, fmt("cannot read %s: %s", path, tostring(rerr)) end
      ok, err = w:add_bytes(path, data, a)
    elseif st then
      return nil, fmt("%s is not a regular file", path)
    else
      ok, err = w:whiteout(path)
    end
    if not ok then return nil, fmt("cannot restate %s: %s", path, tostring(err)) end
  end
  if opts and opts.results then
    local st, a = attrs_of(img, M.RESULTS)
    local ok, err
    if st then
      ok, err = M.write_dirs(w, M.RESULTS, opts.results, a.mtime)
    else
      ok, err = w:whiteout(M.RESULTS)
    end
    if not ok then return nil, fmt("cannot restate %s: %s", M.RESULTS, tostring(err)) end
  end
  return true
end

-- Add root as an opaque directory and the directories of a listing below
-- it (the files follow from the caller). `mtime` as for M.write_tree.
function M.write_dirs(w, root, entries, mtime)
  local ok, err = w:add_dir(root, { mode = fs.MODE_DIR, opaque = true, mtime = mtime })
  if not ok then return nil, fmt("cannot add %s: %s", root, tostring(err)) end
  for _, e in ipairs(entries or {}) do
    if e.type == "dir" then
      ok, err = w:add_dir(root .. "/" .. e.path, { mode = e.mode or fs.MODE_DIR, mtime = mtime })
      if not ok then return nil, fmt("cannot add %s/%s: %s", root, e.path, tostring(err)) end
    end
  end
  return true
end

-- Add directories of a listing and files (pht.files records, each with
-- .src) under `root` of the writer; root itself is added as an opaque
-- directory so nothing of the lower layers shows through. `mtime`
-- (optional) for every entry, else the writer's time.
function M.write_tree(w, root, entries, files, mtime)
  local ok, err = M.write_dirs(w, root, entries, mtime)
  if not ok then return nil, err end
  for _, f in ipairs(files) do
    ok, err = w:add_file(root .. "/" .. f.path, f.src, { mode = f.mode or fs.MODE_FILE, mtime = mtime })
    if not ok then return nil, fmt("cannot add %s/%s: %s", root, f.path, tostring(err)) end
  end
  return true
end

-- OCI layouts ---------------------------------------------------------------------

-- The layout directory and tag of an oci: reference, or nil for any other
-- transport. fallback (a reference) gives the tag when this one has none:
-- an untagged commit into the source's own layout keeps the source's tag.
function M.oci_layout(reference, fallback)
  local r = pht.parse_ref(reference)
  if not r or r.transport ~= "oci" then return nil end
  local tag = r.tag
  if not tag and fallback then
    local f = pht.parse_ref(fallback)
    if f and f.transport == "oci" and f.path == r.path then tag = f.tag end
  end
  return r.path, tag
end

-- The manifests of an OCI layout that hold a pre-run's plaintext
-- (pht.oci_plaintext; keep: the tag of the current train, or nil), as
-- { {digest=, name=, why=} ... }, or nil and a message.
function M.plaintext_images(dir, keep)
  local found, err = pht.oci_plaintext(dir, keep)
  if not found then return nil, fmt("cannot check %s for plaintext: %s", dir, tostring(err)) end
  return found
end

-- "sha256:0123456789ab (tag latest)" or "(untagged)": a manifest in messages.
function M.describe_image(f)
  return fmt("%s (%s)", f.digest:sub(1, 19), f.name and ("tag " .. f.name) or "untagged")
end

-- Remove the manifests of dir that hold plaintext (M.plaintext_images) and
-- collect their blobs. Returns the list removed and the number of blobs
-- removed, or nil and a message.
function M.remove_plaintext_images(dir, keep)
  local found, err = M.plaintext_images(dir, keep)
  if not found then return nil, err end
  if #found == 0 then return found, 0 end
  local digests = {}
  for i, f in ipairs(found) do digests[i] = f.digest end
  local blobs, rerr = pht.oci_remove_manifests(dir, digests)
  if not blobs then return nil, fmt("cannot remove the plaintext images of %s: %s", dir, tostring(rerr)) end
  return found, blobs
end

-- The images of docker-archive `path` that hold a layer pre-run marked, but
-- the one whose manifest is `skip` (nil: none), as { {image = "@N", name =
-- its first tag or nil, why =} ... }; {} when path does not exist.
function M.archive_plaintext_images(path, tmpdir, skip)
  local out = {}
  if not fs.exists(path) then return out end
  for n = 0, 255 do
    -- the manifest, config and layer list only: the history names the pre-run layer
    local img = pht.open_image("docker-archive:" .. path .. ":@" .. n, { tmpdir = tmpdir, no_index = true })
    if not img then break end
    if img:manifest() ~= skip and M.pre_run_layer(img) then
      out[#out + 1] = { image = "@" .. n, name = ref.repo_tags(img)[1],
        why = "it holds the layer pre-run decrypted (history \"" .. M.PRE_RUN_MARK .. "\")" }
    end
    img:close()
  end
  return out
end

-- The files post-run and build put beside the trees: /opt itself and the
-- config, written from memory.
function M.write_opt(w, cfg_json)
  local ok, err = w:add_dir(M.OPT, { mode = fs.MODE_DIR })
  if ok then ok, err = w:add_bytes(M.CONFIG, cfg_json, { mode = fs.MODE_FILE }) end
  if not ok then return nil, err end
  return true
end

return M
