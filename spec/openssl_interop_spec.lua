-- Every scheme of doc/protocol.md §5-§6 in both directions against the openssl
-- command line: libpht produces and openssl checks, openssl produces and
-- libpht checks. Then: changing any byte of a ciphertext, signature or key
-- makes the matching check fail with a clear error.
local pht = require "pht"
local h = require "helpers"

local keys = h.vectors .. "/keys"
local PRIV, PUB = keys .. "/station_1.pem", keys .. "/station_1.pub.pem"
local PSS = "-pkeyopt digest:sha512 -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_mgf1_md:sha512"
local OAEP = "-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha512 -pkeyopt rsa_mgf1_md:sha512"

local function bytes(n, seed)
  local t = {}
  for i = 1, n do t[i] = string.char((i * 89 + seed * 5 + (i * i) % 233) % 256) end
  return table.concat(t)
end

-- Change byte `pos` of s to another value.
local function flip(s, pos)
  return s:sub(1, pos - 1) .. string.char((s:byte(pos) + 1) % 256) .. s:sub(pos + 1)
end

local dir, priv, pub
before_each(function()
  dir = h.tmpdir()
  priv = assert(pht.load_private_key_file(PRIV))
  pub = assert(pht.load_public_key(h.read(PUB)))
end)

describe("PKCS#1 v1.5 SHA-512 signatures", function()
  it("made by libpht verify with openssl dgst -sha512 -verify", function()
    local eh = pht.sha512("e_h")
    local sig = assert(priv:sign(eh))
    local build_msg = eh .. sig
    h.write(dir .. "/m", build_msg)
    h.write(dir .. "/s", assert(priv:sign(build_msg)))
    local out = h.run("openssl dgst -sha512 -verify " .. h.q(PUB) .. " -signature " .. h.q(dir .. "/s") .. " " .. h.q(dir .. "/m"))
    assert.matches("Verified OK", out)
  end)

  it("made by openssl dgst -sha512 -sign verify with libpht", function()
    local msg = pht.sha512("e_h")
    h.write(dir .. "/m", msg)
    h.run("openssl dgst -sha512 -sign " .. h.q(PRIV) .. " -out " .. h.q(dir .. "/s") .. " " .. h.q(dir .. "/m"))
    local sig = h.read(dir .. "/s")
    assert.is_true(pub:verify(msg, sig))
    assert.are.equal(sig, priv:sign(msg)) -- PKCS#1 v1.5 is deterministic: the same bytes
  end)

  it("made by libpht are refused by openssl for another message", function()
    h.write(dir .. "/m", "other message")
    h.write(dir .. "/s", assert(priv:sign("message")))
    local ok, out = h.sh("openssl dgst -sha512 -verify " .. h.q(PUB) .. " -signature " .. h.q(dir .. "/s") .. " " .. h.q(dir .. "/m"))
    assert.is_false(ok)
    assert.matches("Verification [Ff]ailure", out)
  end)
end)

describe("PSS signatures over a prehashed SHA-512 digest", function()
  it("made by libpht verify with openssl pkeyutl, salt length max", function()
    local ed = pht.sha512("e_d")
    h.write(dir .. "/d", ed)
    h.write(dir .. "/s", assert(priv:sign_digest(ed)))
    local verify = "openssl pkeyutl -verify -pubin -inkey " .. h.q(PUB) .. " -in " .. h.q(dir .. "/d")
      .. " -sigfile " .. h.q(dir .. "/s") .. " " .. PSS
    -- `max` makes openssl insist on the maximum salt (190 bytes here), so this
    -- also shows libpht signs with the salt length the reference uses.
    assert.matches("Verified Successfully", h.run(verify .. " -pkeyopt rsa_pss_saltlen:max"))
    assert.matches("Verified Successfully", h.run(verify .. " -pkeyopt rsa_pss_saltlen:auto"))
  end)

  it("made by openssl pkeyutl with salt length max verify with libpht", function()
    local ed = pht.sha512("chain")
    h.write(dir .. "/d", ed)
    h.run("openssl pkeyutl -sign -inkey " .. h.q(PRIV) .. " -in " .. h.q(dir .. "/d") .. " -out "
      .. h.q(dir .. "/s") .. " " .. PSS .. " -pkeyopt rsa_pss_saltlen:max")
    assert.is_true(pub:verify_digest(ed, h.read(dir .. "/s")))
  end)

  it("made by openssl with a salt shorter than the maximum are refused by libpht", function()
    local ed = pht.sha512("chain")
    h.write(dir .. "/d", ed)
    h.run("openssl pkeyutl -sign -inkey " .. h.q(PRIV) .. " -in " .. h.q(dir .. "/d") .. " -out "
      .. h.q(dir .. "/s") .. " " .. PSS .. " -pkeyopt rsa_pss_saltlen:32")
    assert.matches("Verified Successfully", h.run("openssl pkeyutl -verify -pubin -inkey " .. h.q(PUB)
      .. " -in " .. h.q(dir .. "/d") .. " -sigfile " .. h.q(dir .. "/s") .. " " .. PSS
      .. " -pkeyopt rsa_pss_saltlen:32"))
    local ok, err, code = pub:verify_digest(ed, h.read(dir .. "/s"))
    assert.is_false(ok)
    assert.are.equal("EVERIFY", code)
  end)

  it("made by openssl are refused by libpht for another digest", function()
    h.write(dir .. "/d", pht.sha512("a"))
    h.run("openssl pkeyutl -sign -inkey " .. h.q(PRIV) .. " -in " .. h.q(dir .. "/d") .. " -out "
      .. h.q(dir .. "/s") .. " " .. PSS .. " -pkeyopt rsa_pss_saltlen:max")
    local ok, err, code = pub:verify_digest(pht.sha512("b"), h.read(dir .. "/s"))
    assert.is_false(ok)
    assert.are.equal("EVERIFY", code)
    assert.matches("signature does not verify", err)
  end)
end)

describe("AES-256-CBC with the IV prefix", function()
  local function openssl_dec(keyhex, ct)
    h.write(dir .. "/body", ct:sub(17))
    h.run("openssl enc -d -aes-256-cbc -K " .. keyhex .. " -iv " .. pht.hex(ct:sub(1, 16))
      .. " -in " .. h.q(dir .. "/body") .. " -out " .. h.q(dir .. "/plain"))
    return h.read(dir .. "/plain")
  end

  for _, n in ipairs({ 0, 1, 16, 65537 }) do
    it("written by libpht for " .. n .. " bytes decrypts with openssl enc -d -K -iv", function()
      local key = pht.new_symkey()
      local plain = bytes(n, 1)
      assert.are.equal(plain, openssl_dec(pht.hex(key:export()), key:encrypt(plain)))
    end)

    it("written by openssl enc -K -iv for " .. n .. " bytes decrypts with libpht", function()
      local keyhex, iv = pht.hex(pht.random(32)), pht.random(16)
      local plain = bytes(n, 2)
      h.write(dir .. "/plain", plain)
      h.run("openssl enc -aes-256-cbc -K " .. keyhex .. " -iv " .. pht.hex(iv) .. " -in "
        .. h.q(dir .. "/plain") .. " -out " .. h.q(dir .. "/ct"))
      local key = pht.symkey_from_bytes(pht.unhex(keyhex))
      assert.are.equal(plain, assert(key:decrypt(iv .. h.read(dir .. "/ct"))))
    end)
  end

  it("files of 3 MB cross both ways through encrypt_file/decrypt_file", function()
    local key = pht.new_symkey()
    local keyhex = pht.hex(key:export())
    h.run("head -c 3000001 /dev/urandom > " .. h.q(dir .. "/big"))
    assert.is_true(key:encrypt_file(dir .. "/big", dir .. "/big.enc"))
    local iv = h.run("head -c 16 " .. h.q(dir .. "/big.enc") .. " | od -An -v -tx1"):gsub("%s", "")
    h.run("tail -c +17 " .. h.q(dir .. "/big.enc") .. " | openssl enc -d -aes-256-cbc -K " .. keyhex
      .. " -iv " .. iv .. " -out " .. h.q(dir .. "/big.dec"))
    assert.are.equal(h.sha256_file(dir .. "/big"), h.sha256_file(dir .. "/big.dec"))

    local iv2 = pht.random(16)
    h.write(dir .. "/iv", iv2)
    h.run("openssl enc -aes-256-cbc -K " .. keyhex .. " -iv " .. pht.hex(iv2) .. " -in "
      .. h.q(dir .. "/big") .. " | cat " .. h.q(dir .. "/iv") .. " - > " .. h.q(dir .. "/ossl.enc"))
    assert.is_true(key:decrypt_file(dir .. "/ossl.enc", dir .. "/ossl.dec"))
    assert.are.equal(h.sha256_file(dir .. "/big"), h.sha256_file(dir .. "/ossl.dec"))
  end)
end)

describe("RSA-OAEP SHA-512 key wrapping", function()
  it("wrapped by libpht unwraps with openssl pkeyutl -decrypt", function()
    local symkey = pht.new_symkey()
    h.write(dir .. "/w", assert(pub:wrap(symkey)))
    h.run("openssl pkeyutl -decrypt -inkey " .. h.q(PRIV) .. " -in " .. h.q(dir .. "/w") .. " -out "
      .. h.q(dir .. "/k") .. " " .. OAEP)
    assert.are.equal(symkey:export(), h.read(dir .. "/k"))
  end)

  it("wrapped by openssl pkeyutl -encrypt unwraps with libpht", function()
    local raw = pht.random(32)
    h.write(dir .. "/k", raw)
    h.run("openssl pkeyutl -encrypt -pubin -inkey " .. h.q(PUB) .. " -in " .. h.q(dir .. "/k")
      .. " -out " .. h.q(dir .. "/w") .. " " .. OAEP)
    assert.are.equal(raw, assert(priv:unwrap(h.read(dir .. "/w"))):export())
  end)

  it("wrapped by openssl with SHA-1 OAEP is refused by libpht", function()
    h.write(dir .. "/k", pht.random(32))
    h.run("openssl pkeyutl -encrypt -pubin -inkey " .. h.q(PUB) .. " -in " .. h.q(dir .. "/k")
      .. " -out " .. h.q(dir .. "/w") .. " -pkeyopt rsa_padding_mode:oaep")
    local k, err, code = priv:unwrap(h.read(dir .. "/w"))
    assert.is_nil(k)
    assert.are.equal("ECRYPTO", code)
    assert.matches("OAEP", err)
  end)
end)

describe("encrypted PKCS#8 keys", function()
  it("made by openssl genpkey -aes-256-cbc load with the password and sign for openssl", function()
    h.run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -aes-256-cbc -pass pass:gen-pw -out " .. h.q(dir .. "/k.pem"))
    h.run("openssl pkey -passin pass:gen-pw -in " .. h.q(dir .. "/k.pem") .. " -pubout -out " .. h.q(dir .. "/p.pem"))
    local key = assert(pht.load_private_key_file(dir .. "/k.pem", "gen-pw"))
    h.write(dir .. "/m", "message")
    h.write(dir .. "/s", assert(key:sign("message")))
    assert.matches("Verified OK", h.run("openssl dgst -sha512 -verify " .. h.q(dir .. "/p.pem")
      .. " -signature " .. h.q(dir .. "/s") .. " " .. h.q(dir .. "/m")))
  end)

  it("made by openssl pkcs8 -topk8 -v2 aes-256-cbc load with the password", function()
    h.run("openssl pkcs8 -topk8 -v2 aes-256-cbc -passout pass:p8 -in " .. h.q(PRIV) .. " -out " .. h.q(dir .. "/k.pem"))
    assert.are.equal(priv:fingerprint(), assert(pht.load_private_key_file(dir .. "/k.pem", "p8")):fingerprint())
  end)

  it("written by libpht decrypt with openssl pkey -passin", function()
    h.write(dir .. "/k.pem", priv:private_pem("mine"))
    local pem = h.run("openssl pkey -passin pass:mine -in " .. h.q(dir .. "/k.pem") .. " -pubout")
    assert.are.equal(priv:public_pem(), pem)
  end)
end)

describe("one changed byte", function()
  it("of a PKCS#1 v1.5 signature, at any position, fails verification", function()
    local msg = pht.sha512("e_h")
    local sig = assert(priv:sign(msg))
    for pos = 1, #sig do
      local ok, err, code = pub:verify(msg, flip(sig, pos))
      assert.is_false(ok, "byte " .. pos)
      assert.are.equal("EVERIFY", code)
      assert.matches("signature does not verify", err)
    end
  end)

  it("of a PSS signature, at any position, fails verification", function()
    local ed = pht.sha512("e_d")
    local sig = assert(priv:sign_digest(ed))
    for pos = 1, #sig do
      local ok, _, code = pub:verify_digest(ed, flip(sig, pos))
      assert.is_false(ok, "byte " .. pos)
      assert.are.equal("EVERIFY", code)
    end
  end)

  it("of a wrapped key, at any position, fails the unwrap", function()
    local wrapped = assert(pub:wrap(pht.new_symkey()))
    for pos = 1, #wrapped do
      local k, err, code = priv:unwrap(flip(wrapped, pos))
      assert.is_nil(k, "byte " .. pos)
      assert.are.equal("ECRYPTO", code)
      assert.matches("cannot decrypt", err)
    end
  end)

  it("of a ciphertext, at any position, fails decryption or the hash over the plaintext", function()
    local key = pht.new_symkey()
    local plain = bytes(40, 3)
    local signed = pht.sha512(plain)
    local ct = key:encrypt(plain)
    assert.are.equal(64, #ct)
    local bad_decrypts = 0
    for pos = 1, #ct do
      local out, err, code = key:decrypt(flip(ct, pos))
      if out then
        assert.are_not.equal(signed, pht.sha512(out), "byte " .. pos)
      else
        bad_decrypts = bad_decrypts + 1
        assert.are.equal("ECRYPTO", code)
        assert.matches("bad decrypt", err)
      end
    end
    -- The last byte of the next-to-last block sets the padding byte: that one
    -- change always breaks the padding (0x08 becomes 0x09 over 8 bytes).
    assert.is_true(bad_decrypts >= 1)
  end)

  it("of a public key in its config form, at any position, fails loading or verification", function()
    local msg = pht.sha512("e_h")
    local sig = assert(priv:sign(msg))
    local pem = h.read(PUB)
    for pos = 1, #pem do
      local c = pem:sub(pos, pos)
      local changed = pem:sub(1, pos - 1) .. (c == "A" and "B" or "A") .. pem:sub(pos + 1)
      local key, err = pht.load_public_key_hex(pht.hex(changed))
      if key then
        -- Another key: the signature does not verify, or no longer fits its size.
        local ok, verr, code = key:verify(msg, sig)
        assert.is_not_true(ok, "byte " .. pos)
        if ok == false then
          assert.are.equal("EVERIFY", code)
          assert.matches("does not verify", verr)
        else
          assert.are.equal("EFORMAT", code)
          assert.matches("signature is 256 bytes, a %d+%-bit key makes %d+%-byte signatures", verr)
        end
      else
        assert.matches("public key", err)
      end
    end
  end)
end)
