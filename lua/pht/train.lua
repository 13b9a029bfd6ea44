-- Protocol helpers shared by the stock workflows (scripts/*.lua): reading a
-- train's /opt from an image, the file-set rules, decrypting and encrypting
-- through private temporary files, the hashes of PROTOCOL.md §4 and the
-- route's bookkeeping. Every function returns its result, or nil and a
-- message an operator can act on; none prints.
local pht = require "pht"

local M = {}

M.OPT = "/opt"
M.CONFIG = "/opt/train_config.json"
M.TRAIN = "/opt/pht_train"
M.RESULTS = "/opt/pht_results"
M.USER_KEY = "/opt/user_sym_key.key"
M.QUERY = "query.json"
M.MAX_CONFIG = 16 * 1024 * 1024

-- The history line pre-run writes on its layer. Post-run builds its output
-- on the layers below the last layer carrying it, so the plaintext layer and
-- everything the run added above it are dropped.
M.PRE_RUN_MARK = "libpht pre-run"

local function fmt(...) return string.format(...) end

-- The first 16 hex digits of a digest, for messages.
function M.short(raw)
  return pht.hex(raw):sub(1, 16) .. "..."
end

-- Images ---------------------------------------------------------------------

function M.open_image(ref, tmpdir)
  local img, err = pht.open_image(ref, { tmpdir = tmpdir })
  if not img then return nil, fmt("cannot open %s: %s", ref, tostring(err)) end
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

-- Regular files of a listing, in the protocol's hashing order.
function M.files_in_walk_order(entries)
  local paths = {}
  for _, e in ipairs(entries) do
    if e.type == "file" then paths[#paths + 1] = e.path end
  end
  return pht.walk_sort(paths)
end

-- The layer index (1-based) of the last layer pre-run wrote, or nil.
function M.pre_run_layer(img)
  local layers = img:layers()
  for i = #layers, 1, -1 do
    if layers[i].created_by == M.PRE_RUN_MARK then return i, #layers end
  end
  return nil, #layers
end

-- The "repo:tag" names of a docker-archive image ({} for other transports).
function M.repo_tags(img)
  if img:transport() ~= "docker-archive" then return {} end
  local m = pht.json_decode(img:manifest())
  local tags = {}
  if type(m) == "table" and type(m.RepoTags) == "table" then
    for _, t in ipairs(m.RepoTags) do if type(t) == "string" then tags[#tags + 1] = t end end
  end
  return tags
end

-- Split a reference: transport, location, name ("repo:tag", or nil).
function M.split_ref(ref)
  local transport, rest = ref:match("^([%w%-]+):(.*)$")
  if transport == "docker-archive" then
    local path, name = rest:match("^([^:]*):([^:]+:[^:]+)$")
    return transport, path or rest, name
  elseif transport == "oci" then
    local dir, tag = rest:match("^([^:]*):(.+)$")
    return transport, dir or rest, tag
  end
  return transport, rest, nil
end

-- The tag REPO:base beside the train's REPO:latest in the same archive or
-- layout, as a reference.
function M.base_ref(ref, img)
  local transport, where, name = M.split_ref(ref)
  if transport == "docker-archive" then
    name = name or M.repo_tags(img)[1]
    local repo = name and name:match("^(.*):[^:/]+$")
    if not repo then return nil, "cannot tell the train's repository from " .. ref .. "; give --base" end
    return "docker-archive:" .. where .. ":" .. repo .. ":base"
  elseif transport == "oci" then
    return "oci:" .. where .. ":base"
  elseif transport == "docker-daemon" then
    local repo = where:match("^(.*):[^:/]+$") or where
    return "docker-daemon:" .. repo .. ":base"
  end
  return nil, "cannot derive REPO:base from " .. ref .. "; give --base"
end

-- Where a workflow writes and which names go there: the output if one was
-- given, else the input in place. A docker-archive reference without
-- NAME:TAG gets the names the input image carried, so they move to the new
-- image (and an untagged old image is not left behind in the archive).
function M.commit_target(ctx)
  local dest = ctx.options.output or ctx.options.image
  local transport, _, name = M.split_ref(dest)
  if transport == "docker-archive" and not name then
    local tags = M.repo_tags(ctx.image)
    if #tags > 0 then return dest, tags end
  end
  return dest, nil
end

-- Finish a writer: commit it to the commit target with opts (history,
-- comment, ...) unless adding entries failed already (ok false, werr why),
-- then close it. Sets ctx.written; true, or nil and a message naming the target.
function M.commit(ctx, w, ok, werr, opts)
  local dest, tags = M.commit_target(ctx)
  if ok then
    opts.tags = tags
    ok, werr = w:commit(dest, opts)
  end
  w:close()
  if not ok then return nil, fmt("cannot write %s: %s", dest, tostring(werr)) end
  ctx.written = dest
  return true
end

-- The immutable files -----------------------------------------------------------

local function strip_dot(name)
  return (name:gsub("^%./", ""))
end
M.strip_dot = strip_dot

-- The names /opt/pht_train must hold: file_list (without "./") plus
-- query.json, which is optional. Returns a set name -> "listed" | "query".
function M.expected_train_files(cfg)
  local want = {}
  for _, name in ipairs(cfg:file_list()) do want[strip_dot(name)] = "listed" end
  if not want[M.QUERY] then want[M.QUERY] = "query" end
  return want
end

-- §9: exactly the listed files plus an optional query.json, all regular
-- files; directories only where a listed file lives.
function M.check_train_files(cfg, entries)
  local want = M.expected_train_files(cfg)
  local dirs, seen = {}, {}
  for name in pairs(want) do
    local d = name:match("^(.*)/[^/]+$")
    while d do
      dirs[d] = true
      d = d:match("^(.*)/[^/]+$")
    end
  end
  for _, e in ipairs(entries) do
    if e.type == "dir" then
      if not dirs[e.path] then return nil, fmt("unexpected directory %s/%s", M.TRAIN, e.path) end
    elseif e.type ~= "file" then
      return nil, fmt("%s/%s is a %s, not a regular file", M.TRAIN, e.path, tostring(e.type))
    elseif not want[e.path] then
      return nil, fmt("%s/%s is not in file_list: files were added after the creator signed", M.TRAIN, e.path)
    else
      seen[e.path] = true
    end
  end
  for name, why in pairs(want) do
    if why == "listed" and not seen[name] then
      return nil, fmt("%s/%s is in file_list but missing from the image", M.TRAIN, name)
    end
  end
  return true
end

-- The train's files in hashing order: { {name=, path=rel} ... }, query last.
function M.train_files(cfg, entries)
  local present = {}
  for _, e in ipairs(entries) do if e.type == "file" then present[e.path] = true end end
  local out = {}
  for _, name in ipairs(cfg:file_list()) do
    local n = strip_dot(name)
    if n ~= M.QUERY then out[#out + 1] = { path = n } end
  end
  if present[M.QUERY] then out[#out + 1] = { path = M.QUERY, query = true } end
  return out
end

-- Moving files through the private temporary directory ---------------------------

-- Extract dir of the image under tmp (ciphertext or plaintext as stored) and
-- return the root the entries are relative to.
function M.extract(img, dir, tmp, label)
  local dest = tmp .. "/" .. label
  local ok, err = img:extract(dir, dest)
  if not ok then return nil, fmt("cannot extract %s: %s", dir, tostring(err)) end
  return dest
end

-- Decrypt every file of `files` ({path=rel}...) from root/rel into its own
-- temporary file; sets file.plain. Streams in the core, 64 KiB at a time.
function M.decrypt_all(symkey, files, root, tmp, label)
  for i, f in ipairs(files) do
    f.plain = fmt("%s/%s-%05d.plain", tmp, label, i)
    local ok, err = symkey:decrypt_file(root .. "/" .. f.path, f.plain)
    if not ok then
      return nil, fmt("cannot decrypt %s: %s", f.display or f.path, tostring(err))
    end
  end
  return true
end

-- Encrypt every file's `plain` into its own temporary file (fresh IV each);
-- sets file.cipher.
function M.encrypt_all(symkey, files, tmp, label)
  for i, f in ipairs(files) do
    f.cipher = fmt("%s/%s-%05d.enc", tmp, label, i)
    local ok, err = symkey:encrypt_file(f.plain, f.cipher)
    if not ok then return nil, fmt("cannot encrypt %s: %s", f.path, tostring(err)) end
  end
  return true
end

-- Hashes ------------------------------------------------------------------------

-- Feed every file's plaintext (f.plain) to a hasher in order, marking the
-- start of query.json (f.query); the digest, or nil and a message.
function M.hash_files(h, files)
  for _, f in ipairs(files) do
    if f.query then h:begin_query() end
    local ok, err = h:update_file(f.plain)
    if not ok then return nil, fmt("cannot hash %s: %s", f.path, tostring(err)) end
  end
  return h:digest()
end

-- e_h over the plaintext train files (list from M.train_files, with .plain).
function M.immutable_hash(cfg, files)
  return M.hash_files(pht.immutable_hasher(cfg:creator_id(), cfg:session_id()), files)
end

-- e_d over the plaintext results (in walk order, with .plain).
function M.results_hash(cfg, files)
  return M.hash_files(pht.results_hasher(cfg:session_id()), files)
end

-- Keys and the route ------------------------------------------------------------

function M.public_key(hex, what)
  local key, err = pht.load_public_key_hex(hex)
  if not key then return nil, fmt("%s is not a usable public key: %s", what, tostring(err)) end
  return key
end

function M.unhex(hex, what)
  if hex == nil then return nil, what .. " is missing" end
  local raw, err = pht.unhex(hex)
  if not raw then return nil, fmt("%s is not hex: %s", what, tostring(err)) end
  return raw
end

-- Stops sorted by index, and the stop of `station` with its position.
function M.find_stop(cfg, station)
  local stops = cfg:route()
  for pos, s in ipairs(stops) do
    if tostring(s.station) == tostring(station) then return s, pos, stops end
  end
  return nil, fmt("station %s is not on the route (route: %s)", tostring(station), M.route_names(stops))
end

function M.route_names(stops)
  local names = {}
  for i, s in ipairs(stops) do names[i] = tostring(s.station) end
  return table.concat(names, ", ")
end

-- The stop whose turn it is: the first stop without a chain signature (nil
-- when every stop has signed: the train is home).
function M.next_stop(stops)
  for pos, s in ipairs(stops) do
    if not s.signature then return s, pos end
  end
  return nil
end

-- The raw chain digests of the stops before position pos, concatenated: the
-- X of PROTOCOL.md §5 for the stop at pos (the session id for the first).
function M.chain_prefix(cfg, stops, pos)
  if pos == 1 then return cfg:session_id() end
  local parts = {}
  for i = 1, pos - 1 do
    local sig = stops[i].signature
    if not sig then return nil, fmt("stop %s (index %d) has no signature", tostring(stops[i].station), stops[i].index) end
    local raw, err = M.unhex(sig.digest, fmt("route[%d].signature.digest", stops[i].index))
    if not raw then return nil, err end
    parts[#parts + 1] = raw
  end
  return table.concat(parts)
end

-- The checks of what earlier stops signed (PROTOCOL.md §7.5, §9) -----------------

local function stop_name(s) return fmt("station %s (index %d)", tostring(s.station), s.index) end

-- Stop s's chain signature {digest, signature} verifies with its route key.
function M.verify_stop_signature(s)
  if not s.signature then return nil, stop_name(s) .. " has no signature" end
  local what = fmt("station %s's (index %d) signature", tostring(s.station), s.index)
  local pub, err = M.public_key(s.rsa_public_key, fmt("route[%d].rsa_public_key", s.index))
  if not pub then return nil, err end
  local digest, derr = M.unhex(s.signature.digest, what .. " digest")
  if not digest then return nil, derr end
  local sig, serr = M.unhex(s.signature.signature, what)
  if not sig then return nil, serr end
  local ok, verr = pub:verify_digest(digest, sig)
  if ok == nil then return nil, "cannot check " .. what .. ": " .. tostring(verr) end
  if not ok then return nil, what .. " does not verify" end
  return true
end

-- e_d over the decrypted results, which must equal the config's result_hash.
function M.check_results_hash(cfg, files)
  local e_d, err = M.results_hash(cfg, files)
  if not e_d then return nil, err end
  local want, werr = M.unhex(cfg:get("result_hash"), "result_hash")
  if not want then return nil, werr end
  if e_d ~= want then
    return nil, fmt("results have changed: e_d is %s, the config's result_hash is %s", M.short(e_d), M.short(want))
  end
  return e_d
end

-- result_signature verifies over e_d with the key of stop s, which wrote the
-- results (`role` says which stop that is, for the message).
function M.verify_result_signature(cfg, s, e_d, role)
  local pub, err = M.public_key(s.rsa_public_key, fmt("route[%d].rsa_public_key", s.index))
  if not pub then return nil, err end
  local sig, serr = M.unhex(cfg:get("result_signature"), "result_signature")
  if not sig then return nil, serr end
  local ok, verr = pub:verify_digest(e_d, sig)
  if ok == nil then return nil, "cannot check result_signature: " .. tostring(verr) end
  if not ok then
    return nil, fmt("result_signature does not verify with the key of %s, %s", stop_name(s), role)
  end
  return true
end

-- §9: the digest of the stop at pos is SHA-512(earlier digests || e_d).
function M.verify_chain_digest(cfg, stops, pos, e_d)
  local prefix, err = M.chain_prefix(cfg, stops, pos)
  if not prefix then return nil, err end
  local s = stops[pos]
  local digest, derr = M.unhex(s.signature and s.signature.digest, fmt("route[%d].signature.digest", s.index))
  if not digest then return nil, derr end
  if digest ~= pht.chain_digest(prefix, e_d) then
    return nil, fmt("station %s's (index %d) chain digest is not SHA-512(earlier digests || result_hash)",
      tostring(s.station), s.index)
  end
  return true
end

-- Writing -----------------------------------------------------------------------

-- Add directories of a listing and files (with a `src` field) under `root` of
-- the writer; root itself is added as an opaque directory so nothing of the
-- lower layers shows through. `mtime` (optional) for every entry, else the
-- writer's time.
function M.write_tree(w, root, entries, files, mtime)
  local ok, err = w:add_dir(root, { mode = 493, opaque = true, mtime = mtime })
  if not ok then return nil, fmt("cannot add %s: %s", root, tostring(err)) end
  for _, e in ipairs(entries or {}) do
    if e.type == "dir" then
      ok, err = w:add_dir(root .. "/" .. e.path, { mode = e.mode or 493, mtime = mtime })
      if not ok then return nil, fmt("cannot add %s/%s: %s", root, e.path, tostring(err)) end
    end
  end
  for _, f in ipairs(files) do
    ok, err = w:add_file(root .. "/" .. f.path, f.src, { mode = f.mode or 420, mtime = mtime })
    if not ok then return nil, fmt("cannot add %s/%s: %s", root, f.path, tostring(err)) end
  end
  return true
end

return M
