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
--
-- Pre-run and post-run do not make .cipher or decrypted .plain files: they
-- move each file in one pass into the image they write (M.encrypt_into,
-- M.decrypt_into), hashing it on the way.
local pht = require "pht"
local fs = require "pht.fs"
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
-- return the root the entries are relative to.
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

-- Decrypt every record's root/path into its own temporary file; sets .plain.
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

-- Encrypt every record's .plain into its own temporary file (a fresh IV
-- each, §6); sets .cipher.
function M.encrypt_all(symkey, files, tmp, label)
  for i, f in ipairs(files) do
    f.cipher = fmt("%s/%s-%05d.enc", tmp, label, i)
    local ok, err = symkey:encrypt_file(f.plain, f.cipher)
    if not ok then return nil, fmt("cannot encrypt %s: %s", f.path, tostring(err)) end
  end
  return true
end

-- Set every record's .src to its field `which` ("plain" or "cipher"): what
-- the writing step puts into the image.
function M.write_from(files, which)
  for _, f in ipairs(files) do f.src = f[which] end
  return files
end

-- The progress of a run of one-pass calls: `add` gets the byte counts the
-- core reports, `file_done` is called after each file, `finish` at the end;
-- fn sees sums of at least 1 MiB (or of 64 files), then the rest. Without fn
-- add is nil and the others do nothing.
local PROGRESS_BYTES, PROGRESS_FILES = 1024 * 1024, 64
local function progress_sums(fn)
  local nothing = function() end
  if not fn then return nil, nothing, nothing end
  local acc, files = 0, 0
  local function finish()
    if acc > 0 then fn(acc) end
    acc, files = 0, 0
  end
  local function add(n)
    acc = acc + n
    if acc >= PROGRESS_BYTES then finish() end
  end
  local function file_done()
    files = files + 1
    if files >= PROGRESS_FILES then finish() end
  end
  return add, file_done, finish
end

-- Move every record of `list` in one pass into entry dir/path of the image
-- writer w: method is "add_encrypted" (the file is src_of(record), a fresh
-- IV each, §6) or "add_decrypted". opts: hash (a pht hasher fed the
-- plaintext in list order, begin_query before query.json), mtime, and
-- progress (a function called with byte counts, at most about every MiB).
local function crypt_into(method, verb, w, symkey, dir, list, src_of, opts)
  opts = opts or {}
  local h = opts.hash
  local add, file_done, finish = progress_sums(opts.progress)
  for _, f in ipairs(list) do
    if h and f.query then
      local ok, err = h:begin_query()
      if not ok then return nil, fmt("cannot hash %s: %s", f.path, tostring(err)) end
    end
    local ok, err = w[method](w, dir .. "/" .. f.path, src_of(f), symkey,
      { mode = f.mode or fs.MODE_FILE, mtime = opts.mtime, hash = h, progress = add })
    if not ok then return nil, fmt("cannot %s %s: %s", verb, f.display or f.path, tostring(err)) end
    file_done()
  end
  finish()
  return true
end

-- Encrypt every record's .plain straight into the writer under dir (see
-- crypt_into for opts): no ciphertext file, and each byte read once.
function M.encrypt_into(w, symkey, dir, list, opts)
  return crypt_into("add_encrypted", "encrypt", w, symkey, dir, list, function(f) return f.plain end, opts)
end

-- Decrypt every record's ciphertext root/path straight into the writer
-- under dir: the plaintext goes nowhere but the new layer.
function M.decrypt_into(w, symkey, dir, list, root, opts)
  return crypt_into("add_decrypted", "decrypt", w, symkey, dir, list,
    function(f) return root .. "/" .. f.path end, opts)
end

-- Feed every record's plaintext to a hasher in order, marking the start of
-- query.json (.query); the digest, or nil and a message.
function M.hash(h, files)
  for _, f in ipairs(files) do
    if f.query then h:begin_query() end
    local ok, err = h:update_file(f.plain)
    if not ok then return nil, fmt("cannot hash %s: %s", f.path, tostring(err)) end
  end
  return h:digest()
end

-- e_h (§4) over the plaintext train files (M.train_files, with .plain).
function M.immutable_hash(creator_id, session_id, files)
  return M.hash(pht.immutable_hasher(creator_id, session_id), files)
end

-- e_d (§4) over the plaintext results (M.in_walk_order, with .plain).
function M.results_hash(cfg, files)
  return M.hash(pht.results_hasher(cfg:session_id()), files)
end

return M
