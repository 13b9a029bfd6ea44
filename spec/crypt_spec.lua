-- Symmetric keys, AES-256-CBC streams and files, and RSA-OAEP key wrapping
-- (doc/protocol.md §6).
local pht = require "pht"
local h = require "helpers"

local sizes = { 0, 1, 15, 16, 17, 65535, 65536, 65537, 1000000 }

local function bytes(n, seed)
  local t = {}
  for i = 1, n do t[i] = string.char((i * 197 + seed * 13 + (i * i) % 241) % 256) end
  return table.concat(t)
end

local function padded_len(n)
  return 16 + (math.floor(n / 16) + 1) * 16
end

-- Feed data through a cipher in pieces of `step` bytes.
local function stream(c, data, step)
  local out = {}
  for pos = 1, #data, step do
    out[#out + 1] = assert(c:update(data:sub(pos, pos + step - 1)))
  end
  local last, err, code = c:final()
  if not last then return nil, err, code end
  out[#out + 1] = last
  return table.concat(out)
end

-- A fixed ciphertext from `openssl enc`, so that failure cases are deterministic.
local fixed_key = ("11"):rep(32)
local fixed_iv = ("22"):rep(16)
local function openssl_encrypt(plain)
  local dir = h.tmpdir()
  h.write(dir .. "/p", plain)
  h.run("openssl enc -aes-256-cbc -K " .. fixed_key .. " -iv " .. fixed_iv .. " -in "
    .. h.q(dir .. "/p") .. " -out " .. h.q(dir .. "/c"))
  return pht.unhex(fixed_iv) .. h.read(dir .. "/c")
end

describe("pht.new_symkey", function()
  it("draws 32 fresh random bytes", function()
    local a, b = pht.new_symkey(), pht.new_symkey()
    assert.are.equal(32, #a:export())
    assert.are_not.equal(a:export(), b:export())
  end)

  it("shows its type but not its bytes in tostring", function()
    local k = pht.new_symkey()
    assert.matches("^pht.symkey: 0x%x+$", tostring(k))
  end)

  it("raises when used after close", function()
    local k = pht.new_symkey()
    k:close()
    assert.has_error(function() k:encrypt("x") end, "attempt to use a closed pht.symkey")
  end)

  it("leaves an open cipher working after the key is closed, and raises on a closed cipher", function()
    local k = pht.new_symkey()
    local enc = k:encryptor()
    local raw = k:export()
    k:close()
    local ct = assert(enc:update("secret")) .. assert(enc:final())
    assert.are.equal("secret", assert(pht.symkey_from_bytes(raw):decrypt(ct)))
    enc:close()
    enc:close()
    assert.has_error(function() enc:update("x") end, "attempt to use a closed pht.cipher")
  end)
end)

describe("pht.symkey_from_bytes", function()
  it("round-trips through export", function()
    local raw = bytes(32, 1)
    assert.are.equal(raw, pht.symkey_from_bytes(raw):export())
  end)

  it("refuses a key that is not 32 bytes", function()
    local k, err, code = pht.symkey_from_bytes(bytes(31, 1))
    assert.is_nil(k)
    assert.are.equal("EFORMAT", code)
    assert.matches("31 bytes given, AES%-256 needs 32", err)
  end)
end)

describe("AES-256-CBC", function()
  local key
  before_each(function() key = pht.new_symkey() end)

  for _, n in ipairs(sizes) do
    it("round-trips " .. n .. " bytes with encrypt/decrypt as IV || padded ciphertext", function()
      local plain = bytes(n, n)
      local ct = key:encrypt(plain)
      assert.are.equal(padded_len(n), #ct)
      assert.are.equal(plain, assert(key:decrypt(ct)))
    end)
  end

  for _, n in ipairs(sizes) do
    it("round-trips " .. n .. " bytes through the streaming cipher in uneven chunks", function()
      local plain = bytes(n, n + 1)
      for _, step in ipairs({ n < 70000 and 1 or 4099, 7, 16, 65536 }) do
        local ct = assert(stream(key:encryptor(), plain, step))
        assert.are.equal(padded_len(n), #ct)
        assert.are.equal(plain, assert(stream(key:decryptor(), ct, step)))
      end
    end)
  end

  it("gathers an IV that arrives over several updates", function()
    local ct = key:encrypt("split IV")
    local d = key:decryptor()
    assert.are.equal("", d:update(ct:sub(1, 5)))
    assert.are.equal("", d:update(ct:sub(6, 15)))
    local out = d:update(ct:sub(16)) .. d:final()
    assert.are.equal("split IV", out)
  end)

  it("starts the first output with the IV and draws a fresh IV per stream", function()
    local a, b = key:encryptor(), key:encryptor()
    local oa, ob = a:update("same"), b:update("same")
    assert.are.equal(16, #oa)
    assert.are_not.equal(oa, ob)
    assert.are_not.equal(key:encrypt("same"), key:encrypt("same"))
  end)

  it("emits the IV from final when nothing was fed", function()
    local e = key:encryptor()
    local ct = e:final()
    assert.are.equal(32, #ct)
    assert.are.equal("", assert(key:decrypt(ct)))
  end)

  it("refuses update and final after final", function()
    local e = key:encryptor()
    e:final()
    local out, err, code = e:update("x")
    assert.is_nil(out)
    assert.are.equal("ESTATE", code)
    assert.matches("update after final", err)
    out, err, code = e:final()
    assert.is_nil(out)
    assert.are.equal("ESTATE", code)
  end)

  it("decrypts what openssl enc wrote under the fixed key", function()
    local k = pht.symkey_from_bytes(pht.unhex(fixed_key))
    assert.are.equal("fixed plaintext", assert(k:decrypt(openssl_encrypt("fixed plaintext"))))
  end)

  it("reports bad decrypt for the wrong key", function()
    local ct = openssl_encrypt("three blocks of plaintext, forty-seven bytes!!")
    local wrong = pht.symkey_from_bytes(pht.unhex(("11"):rep(31) .. "12"))
    local plain, err, code = wrong:decrypt(ct)
    assert.is_nil(plain)
    assert.are.equal("ECRYPTO", code)
    assert.matches("bad decrypt %(wrong key, or a tampered or truncated ciphertext%)", err)
  end)

  it("reports bad decrypt for a ciphertext cut inside a block", function()
    local k = pht.symkey_from_bytes(pht.unhex(fixed_key))
    local ct = openssl_encrypt("three blocks of plaintext, forty-seven bytes!!")
    local plain, err, code = k:decrypt(ct:sub(1, -2))
    assert.is_nil(plain)
    assert.are.equal("ECRYPTO", code)
    assert.matches("bad decrypt", err)
  end)

  it("reports bad decrypt for a ciphertext missing its last block", function()
    local k = pht.symkey_from_bytes(pht.unhex(fixed_key))
    local ct = openssl_encrypt("three blocks of plaintext, forty-seven bytes!!")
    local plain, _, code = k:decrypt(ct:sub(1, -17))
    assert.is_nil(plain)
    assert.are.equal("ECRYPTO", code)
  end)

  it("reports a ciphertext shorter than the IV as truncated", function()
    local plain, err, code = key:decrypt("0123456789")
    assert.is_nil(plain)
    assert.are.equal("ECRYPTO", code)
    assert.matches("ciphertext of 10 bytes is shorter than its 16%-byte IV %(truncated%)", err)
  end)

  it("reports an IV with no ciphertext after it as bad decrypt", function()
    local plain, err = key:decrypt(("\0"):rep(16))
    assert.is_nil(plain)
    assert.matches("bad decrypt", err)
  end)
end)

describe("symkey:encrypt_file and symkey:decrypt_file", function()
  local key, dir
  before_each(function()
    key = pht.new_symkey()
    dir = h.tmpdir()
  end)

  for _, n in ipairs(sizes) do
    it("round-trip a file of " .. n .. " bytes", function()
      h.write(dir .. "/plain", bytes(n, 3 * n))
      assert.is_true(key:encrypt_file(dir .. "/plain", dir .. "/enc"))
      assert.are.equal(padded_len(n), #h.read(dir .. "/enc"))
      assert.is_true(key:decrypt_file(dir .. "/enc", dir .. "/dec"))
      assert.are.equal(h.sha256_file(dir .. "/plain"), h.sha256_file(dir .. "/dec"))
    end)
  end

  it("leave no partial plaintext behind when decryption fails", function()
    h.write(dir .. "/plain", bytes(200000, 1))
    assert.is_true(key:encrypt_file(dir .. "/plain", dir .. "/enc"))
    h.write(dir .. "/cut", h.read(dir .. "/enc"):sub(1, -2))
    local ok, err, code = key:decrypt_file(dir .. "/cut", dir .. "/dec")
    assert.is_nil(ok)
    assert.are.equal("ECRYPTO", code)
    assert.matches(dir .. "/cut: decrypt: bad decrypt", err, 1, true)
    assert.is_nil(io.open(dir .. "/dec", "rb"))
  end)

  it("refuse to write over the source", function()
    h.write(dir .. "/plain", "data")
    local ok, err, code = key:encrypt_file(dir .. "/plain", dir .. "/plain")
    assert.is_nil(ok)
    assert.are.equal("EINVAL", code)
    assert.matches("same file", err)
    assert.are.equal("data", h.read(dir .. "/plain"))
  end)

  it("name the source that cannot be read", function()
    local ok, err, code = key:encrypt_file(dir .. "/missing", dir .. "/enc")
    assert.is_nil(ok)
    assert.are.equal("EIO", code)
    assert.matches("missing: cannot open", err)
  end)

  it("create the output readable by its owner only", function()
    h.write(dir .. "/plain", "data")
    key:encrypt_file(dir .. "/plain", dir .. "/enc")
    assert.matches("^%-rw%-%-%-%-%-%-%-", h.run("ls -l " .. h.q(dir .. "/enc")))
  end)
end)

describe("key:wrap and key:unwrap", function()
  local station, other, symkey
  before_each(function()
    station = assert(pht.load_private_key_file(h.key_path("station_1")))
    other = assert(pht.load_private_key_file(h.key_path("station_2")))
    symkey = pht.new_symkey()
  end)

  it("round-trip the symmetric key", function()
    local pub = assert(pht.load_public_key_hex(station:public_hex()))
    local wrapped = assert(pub:wrap(symkey))
    assert.are.equal(256, #wrapped)
    assert.are_not.equal(wrapped, pub:wrap(symkey)) -- OAEP is randomised
    assert.are.equal(symkey:export(), assert(station:unwrap(wrapped)):export())
  end)

  it("fail for a key wrapped for another station", function()
    local k, err, code = other:unwrap(station:wrap(symkey))
    assert.is_nil(k)
    assert.are.equal("ECRYPTO", code)
    assert.matches("RSA%-OAEP SHA%-512%): cannot decrypt", err)
  end)

  it("fail for wrapped bytes of the wrong length", function()
    local k, err, code = station:unwrap(station:wrap(symkey):sub(2))
    assert.is_nil(k)
    assert.are.equal("EFORMAT", code)
    assert.matches("wrapped key is 255 bytes", err)
  end)

  it("need a private key to unwrap", function()
    local pub = assert(pht.load_public_key(station:public_pem()))
    local k, err, code = pub:unwrap(station:wrap(symkey))
    assert.is_nil(k)
    assert.are.equal("ESTATE", code)
    assert.matches("needs a private key", err)
  end)

  it("raise on a wrap argument that is not a pht.symkey", function()
    assert.has_error(function() station:wrap("not a key") end)
  end)
end)
