-- The files of a train (doc/protocol.md §1, §3, §4, §6): which names
-- /opt/pht_train and /opt/pht_results hold, in hashing order, and moving
-- them through the private temporary directory: extracting, decrypting,
-- encrypting and hashing, each file streamed by the core 64 KiB at a time.
--
-- A workflow carries each file as one record that gains fields step by
-- step; M.record makes it and is the one place its fields are declared:
--
--   field    set by                          what
--   path     M.record                        the name relative to its tree (no "./")
--   query    M.record                        true for /opt/pht_train/query.json (hashed last)
--   display  M.record (optional)             the name messages use, when not path
--   mode     M.record (optional)             the mode to write it with (default 0644)
--   plain    decrypt_all, or a step reading  the temporary file holding its plaintext
--            plaintext straight from the image
--   cipher   encrypt_all                     the temporary file holding its ciphertext
--   src      the step that writes the image  which of plain / cipher goes into the image
local pht = require "pht"
local train = require "pht.train"

local M = {}

local fmt = string.format

-- A file record for `path` (see the table above); opts may set query,
-- display, mode and plain.
function M.record(path, opts)
  local f = { path = path }
  for k, v in pairs(opts or {}) do f[k] = v end
  return f
end

local function strip_dot(name)
  return (name:gsub("^%./", ""))
end
M.strip_dot = strip_dot

-- The names /opt/pht_train must hold: file_list (without "./") plus
-- query.json, which is optional. Returns a set name -> "listed" | "query".
function M.expected_train_files(cfg)
  local want = {}
  for _, name in ipairs(cfg:file_list()) do want[strip_dot(name)] = "listed" end
  if not want[train.QUERY] then want[train.QUERY] = "query" end
  return want
end

-- The set of directories the paths lie in, with their parents ("a/b/c"
-- gives "a/b" and "a").
function M.parent_dirs(paths)
  local dirs = {}
  for _, p in ipairs(paths) do
    local d = p:match("^(.*)/[^/]+$")
    while d and not dirs[d] do
      dirs[d] = true
      d = d:match("^(.*)/[^/]+$")
    end
  end
  return dirs
end

-- The train's files in hashing order (§4): file_list order, query.json last.
function M.train_files(cfg, entries)
  local present = {}
  for _, e in ipairs(entries) do if e.type == "file" then present[e.path] = true end end
  local out = {}
  for _, name in ipairs(cfg:file_list()) do
    local n = strip_dot(name)
    if n ~= train.QUERY then out[#out + 1] = M.record(n) end
  end
  if present[train.QUERY] then out[#out + 1] = M.record(train.QUERY, { query = true }) end
  return out
end

-- The regular files of a listing in the protocol's hashing order (§4:
-- Docker's walk order), as records.
function M.in_walk_order(entries)
  local paths = {}
  for _, e in ipairs(entries) do
    if e.type == "file" then paths[#paths + 1] = e.path end
  end
  local out = {}
  for i, p in ipairs(pht.walk_sort(paths)) do out[i] = M.record(p) end
  return out
end

-- Extract dir of the image under tmp (ciphertext or plaintext as stored) and
-- return the root the entries are relative to. The bytes written go to the
-- image's progress function (img:set_progress), if it has one.
function M.extract(img, dir, tmp, label)
  local dest = tmp .. "/" .. label
  local ok, err = img:extract(dir, dest)
  if not ok then return nil, fmt("cannot extract %s: %s", dir, tostring(err)) end
  return dest
end

-- Point every record's .plain at its file under root, where the image's
-- plaintext was extracted.
function M.plain_under(files, root)
  for _, f in ipairs(files) do f.plain = root .. "/" .. f.path end
end

-- The size in bytes of the file at path, or 0 (for progress counts).
local function size_of(path)
  local fh = io.open(path, "rb")
  if not fh then return 0 end
  local n = fh:seek("end") or 0
  fh:close()
  return n
end

-- Decrypt every record's root/path into its own temporary file; sets .plain.
-- add (optional, a progress counter's function) gets each file's ciphertext bytes.
function M.decrypt_all(symkey, files, root, tmp, label, add)
  for i, f in ipairs(files) do
    f.plain = fmt("%s/%s-%05d.plain", tmp, label, i)
    local ok, err = symkey:decrypt_file(root .. "/" .. f.path, f.plain)
    if not ok then
      return nil, fmt("cannot decrypt %s: %s", f.display or f.path, tostring(err))
    end
    if add then add(size_of(root .. "/" .. f.path)) end
  end
  return true
end

-- Encrypt every record's .plain into its own temporary file (a fresh IV
-- each, §6); sets .cipher. add (optional) gets each file's plaintext bytes.
function M.encrypt_all(symkey, files, tmp, label, add)
  for i, f in ipairs(files) do
    f.cipher = fmt("%s/%s-%05d.enc", tmp, label, i)
    local ok, err = symkey:encrypt_file(f.plain, f.cipher)
    if not ok then return nil, fmt("cannot encrypt %s: %s", f.path, tostring(err)) end
    if add then add(size_of(f.plain)) end
  end
  return true
end

-- The bytes of every record's .plain: the total a step streaming them expects.
function M.plain_bytes(files)
  local n = 0
  for _, f in ipairs(files) do n = n + (f.plain and size_of(f.plain) or 0) end
  return n
end

-- Set every record's .src to its field `which` ("plain" or "cipher"): what
-- the writing step puts into the image.
function M.write_from(files, which)
  for _, f in ipairs(files) do f.src = f[which] end
  return files
end

-- Feed every record's plaintext to a hasher in order, marking the start of
-- query.json (.query); the digest, or nil and a message. add (optional)
-- gets each file's bytes.
function M.hash(h, files, add)
  for _, f in ipairs(files) do
    if f.query then h:begin_query() end
    local ok, err = h:update_file(f.plain)
    if not ok then return nil, fmt("cannot hash %s: %s", f.path, tostring(err)) end
    if add then add(size_of(f.plain)) end
  end
  return h:digest()
end

-- e_h (§4) over the plaintext train files (M.train_files, with .plain).
function M.immutable_hash(creator_id, session_id, files, add)
  return M.hash(pht.immutable_hasher(creator_id, session_id), files, add)
end

-- e_d (§4) over the plaintext results (M.in_walk_order, with .plain).
function M.results_hash(cfg, files, add)
  return M.hash(pht.results_hasher(cfg:session_id()), files, add)
end

return M
