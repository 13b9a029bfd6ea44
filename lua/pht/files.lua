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
--   image    M.in_image                      the image holding its plaintext in place
--   image_path M.in_image                    its path in that image (when .plain is not set)
--   size     M.in_image                      its size in bytes
--   cipher   encrypt_all                     the temporary file holding its ciphertext
--   src      the step that writes the image  which of plain / cipher goes into the image
--
-- Pre-run and post-run do not make .cipher or decrypted .plain files: they
-- move each file in one pass into the image they write (M.encrypt_into,
-- M.decrypt_into), hashing it on the way. Where the image holds a tree in a
-- plain tar layer (img:in_place), they read each file where it is: no
-- extracted copy at all (the records carry .image and .image_path).
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

-- Point every record at its file in the image, under dir, read in place
-- (img:in_place(dir) said so): sets .image, .image_path and .size (from
-- entries, the tree's listing).
function M.in_image(files, img, dir, entries)
  local size = {}
  for _, e in ipairs(entries or {}) do size[e.path] = e.size end
  for _, f in ipairs(files) do
    f.image, f.image_path, f.size = img, dir .. "/" .. f.path, size[f.path] or 0
  end
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
  for _, f in ipairs(files) do n = n + (f.plain and size_of(f.plain) or f.size or 0) end
  return n
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
    local src, img = src_of(f)
    local ok, err = w[method](w, dir .. "/" .. f.path, src, symkey,
      { mode = f.mode or fs.MODE_FILE, mtime = opts.mtime, hash = h, progress = add, image = img })
    if not ok then return nil, fmt("cannot %s %s: %s", verb, f.display or f.path, tostring(err)) end
    file_done()
  end
  finish()
  return true
end

-- Where a record's plaintext is: its .plain file, or (nil) its path in .image.
local function plain_of(f)
  if f.plain then return f.plain end
  return f.image_path, f.image
end

-- Encrypt every record's plaintext (.plain, or in place in .image) straight
-- into the writer under dir (see crypt_into for opts): no ciphertext file,
-- and each byte read once.
function M.encrypt_into(w, symkey, dir, list, opts)
  return crypt_into("add_encrypted", "encrypt", w, symkey, dir, list, plain_of, opts)
end

-- Decrypt every record's ciphertext straight into the writer under dir:
-- root/path when root is a directory, else read in place from the image
-- opts.image at dir/path. The plaintext goes nowhere but the new layer.
function M.decrypt_into(w, symkey, dir, list, root, opts)
  local img = opts and opts.image
  return crypt_into("add_decrypted", "decrypt", w, symkey, dir, list, function(f)
    if root then return root .. "/" .. f.path end
    return dir .. "/" .. f.path, img
  end, opts)
end

-- Feed the file of record f to h: its .plain file, or its bytes in .image.
local HASH_READ = 1024 * 1024
local function hash_record(h, f)
  if f.plain then return h:update_file(f.plain) end
  local r, err = f.image:open_file(f.image_path)
  if not r then return nil, err end
  while true do
    local chunk, rerr = r:read(HASH_READ) -- nil at the end, or nil and a message
    if not chunk then
      r:close()
      if rerr then return nil, rerr end
      return true
    end
    h:update(chunk)
  end
end

-- Feed every record's plaintext to a hasher in order, marking the start of
-- query.json (.query); the digest, or nil and a message. add (optional)
-- gets each file's bytes.
function M.hash(h, files, add)
  for _, f in ipairs(files) do
    if f.query then h:begin_query() end
    local ok, err = hash_record(h, f)
    if not ok then return nil, fmt("cannot hash %s: %s", f.path, tostring(err)) end
    if add then add(f.plain and size_of(f.plain) or f.size or 0) end
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
