/* AES-256-CBC streams, files and RSA-OAEP key wrapping. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "pht/crypt.h"
#include "pht/hash.h"
#include "test.h"

static const size_t sizes[] = {0, 1, 15, 16, 17, 65535, 65536, 65537, 1000000};
#define NSIZES (sizeof sizes / sizeof *sizes)

static unsigned char *pattern(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 2654435761u + seed) >> 7);
    return p;
}

/* Run data through a cipher in pieces of `step` bytes; returns a malloc'd output. */
static unsigned char *run(pht_cipher *c, const unsigned char *in, size_t n, size_t step,
                          size_t *outlen, int *rc, pht_error *err)
{
    unsigned char *out = malloc(n + PHT_CIPHER_OVERHEAD * (n / step + 2));
    size_t total = 0, got = 0;
    *rc = 0;
    for (size_t off = 0; off < n && *rc == 0; off += step) {
        size_t piece = n - off < step ? n - off : step;
        *rc = pht_cipher_update(c, in + off, piece, out + total, &got, err);
        total += got;
    }
    if (*rc == 0) {
        *rc = pht_cipher_final(c, out + total, &got, err);
        total += got;
    }
    *outlen = total;
    return out;
}

static void test_round_trips(const pht_symkey *key)
{
    pht_error err;
    static const size_t steps[] = {1, 7, 16, 4096, PHT_CHUNK_SIZE, 1 << 30};
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        unsigned char *plain = pattern(n, (unsigned)i);
        for (size_t s = 0; s < sizeof steps / sizeof *steps; s++) {
            if (steps[s] == 1 && n > 70000) continue; /* keeps valgrind runs short */
            int rc;
            size_t ctlen, ptlen;
            pht_cipher *enc = pht_cipher_new_encrypt(key, &err);
            unsigned char *ct = run(enc, plain, n, steps[s], &ctlen, &rc, &err);
            CHECK_OK(rc, &err);
            pht_cipher_free(enc);
            /* IV + the padded content: always at least one padding byte. */
            CHECK(ctlen == PHT_IV_LEN + (n / 16 + 1) * 16);
            pht_cipher *dec = pht_cipher_new_decrypt(key, &err);
            unsigned char *pt = run(dec, ct, ctlen, steps[s], &ptlen, &rc, &err);
            CHECK_OK(rc, &err);
            pht_cipher_free(dec);
            CHECK(ptlen == n && memcmp(pt, plain, n) == 0);
            free(ct);
            free(pt);
        }
        free(plain);
    }
}

static void test_fresh_iv(const pht_symkey *key)
{
    pht_error err;
    unsigned char a[64], b[64];
    size_t na = 0, nb = 0, more = 0;
    pht_cipher *c1 = pht_cipher_new_encrypt(key, &err), *c2 = pht_cipher_new_encrypt(key, &err);
    CHECK_OK(pht_cipher_update(c1, (const unsigned char *)"same", 4, a, &na, &err), &err);
    CHECK_OK(pht_cipher_final(c1, a + na, &more, &err), &err);
    CHECK_OK(pht_cipher_update(c2, (const unsigned char *)"same", 4, b, &nb, &err), &err);
    CHECK_OK(pht_cipher_final(c2, b + nb, &more, &err), &err);
    CHECK(memcmp(a, b, PHT_IV_LEN) != 0);
    CHECK(memcmp(a + PHT_IV_LEN, b + PHT_IV_LEN, 16) != 0);
    CHECK_CODE(pht_cipher_update(c1, a, 1, b, &nb, &err), PHT_ESTATE, &err);
    CHECK_CODE(pht_cipher_final(c1, b, &nb, &err), PHT_ESTATE, &err);
    pht_cipher_free(c1);
    pht_cipher_free(c2);
    pht_cipher_free(NULL);
}

/*
 * A ciphertext made by OpenSSL directly with a fixed key and IV, so the
 * failure cases below are deterministic (CBC has no MAC: a wrong key is caught
 * only by the padding check, which these fixed inputs are known to trip).
 */
static const unsigned char fixed_key[32] = "0123456789abcdef0123456789abcdef";
static const unsigned char fixed_iv[16] = "fedcba9876543210";

static size_t evp_encrypt(const unsigned char *plain, size_t n, unsigned char *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int a = 0, b = 0;
    memcpy(out, fixed_iv, 16);
    EVP_EncryptInit_ex(c, EVP_aes_256_cbc(), NULL, fixed_key, fixed_iv);
    EVP_EncryptUpdate(c, out + 16, &a, plain, (int)n);
    EVP_EncryptFinal_ex(c, out + 16 + a, &b);
    EVP_CIPHER_CTX_free(c);
    return 16 + (size_t)a + (size_t)b;
}

static int decrypt_all(const pht_symkey *key, const unsigned char *ct, size_t n, unsigned char *out,
                       size_t *outlen, pht_error *err)
{
    pht_cipher *c = pht_cipher_new_decrypt(key, err);
    size_t a = 0, b = 0;
    int rc = pht_cipher_update(c, ct, n, out, &a, err);
    if (rc == 0) rc = pht_cipher_final(c, out + a, &b, err);
    pht_cipher_free(c);
    *outlen = a + b;
    return rc;
}

static void test_bad_inputs(void)
{
    pht_error err;
    const unsigned char plain[] = "three blocks of plaintext, forty-eight bytes!!";
    unsigned char ct[128], out[256];
    size_t n = evp_encrypt(plain, sizeof plain, ct), outlen = 0;
    CHECK(n == 16 + 48);
    pht_symkey *key = pht_symkey_from_bytes(fixed_key, 32, &err);
    CHECK_OK(decrypt_all(key, ct, n, out, &outlen, &err), &err);
    CHECK(outlen == sizeof plain && memcmp(out, plain, outlen) == 0);

    unsigned char wrong_raw[32];
    memcpy(wrong_raw, fixed_key, 32);
    wrong_raw[31] ^= 1;
    pht_symkey *wrong = pht_symkey_from_bytes(wrong_raw, 32, &err);
    CHECK_CODE(decrypt_all(wrong, ct, n, out, &outlen, &err), PHT_ECRYPTO, &err);
    CHECK_STR_CONTAINS(err.message, "bad decrypt");
    pht_symkey_free(wrong);

    CHECK_CODE(decrypt_all(key, ct, n - 1, out, &outlen, &err), PHT_ECRYPTO, &err);
    CHECK_STR_CONTAINS(err.message, "bad decrypt");
    CHECK_CODE(decrypt_all(key, ct, n - 16, out, &outlen, &err), PHT_ECRYPTO, &err);
    CHECK_CODE(decrypt_all(key, ct, 16, out, &outlen, &err), PHT_ECRYPTO, &err);
    CHECK_CODE(decrypt_all(key, ct, 10, out, &outlen, &err), PHT_ECRYPTO, &err);
    CHECK_STR_CONTAINS(err.message, "shorter than its 16-byte IV");
    CHECK_CODE(decrypt_all(key, ct, 0, out, &outlen, &err), PHT_ECRYPTO, &err);
    /* A changed last byte breaks the padding. */
    ct[n - 1] ^= 0x55;
    CHECK_CODE(decrypt_all(key, ct, n, out, &outlen, &err), PHT_ECRYPTO, &err);
    ct[n - 1] ^= 0x55;
    /* A changed IV byte or middle byte decrypts to different plaintext (no MAC in §6). */
    ct[3] ^= 0x01;
    CHECK_OK(decrypt_all(key, ct, n, out, &outlen, &err), &err);
    CHECK(memcmp(out, plain, sizeof plain) != 0);
    ct[3] ^= 0x01;
    pht_symkey_free(key);

    CHECK(pht_symkey_from_bytes(fixed_key, 31, &err) == NULL);
    CHECK(err.code == PHT_EFORMAT);
    CHECK_STR_CONTAINS(err.message, "31 bytes given, AES-256 needs 32");
}

static void write_file(const char *path, const unsigned char *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && write(fd, p, n) == (ssize_t)n);
    close(fd);
}

static unsigned char *read_file(const char *path, size_t *n)
{
    struct stat st;
    if (stat(path, &st) != 0) return NULL;
    unsigned char *p = malloc((size_t)st.st_size + 1);
    int fd = open(path, O_RDONLY);
    *n = (size_t)read(fd, p, (size_t)st.st_size);
    close(fd);
    return p;
}

static void test_files(const pht_symkey *key)
{
    pht_error err;
    char src[1024], enc[1024], dec[1024];
    snprintf(src, sizeof src, "%s/test_crypt.plain", test_tmpdir());
    snprintf(enc, sizeof enc, "%s/test_crypt.enc", test_tmpdir());
    snprintf(dec, sizeof dec, "%s/test_crypt.dec", test_tmpdir());
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i], got = 0, ctn = 0;
        unsigned char *plain = pattern(n, 99u + (unsigned)i);
        write_file(src, plain, n);
        CHECK_OK(pht_encrypt_file(key, src, enc, &err), &err);
        CHECK_OK(pht_decrypt_file(key, enc, dec, &err), &err);
        unsigned char *back = read_file(dec, &got);
        unsigned char *ct = read_file(enc, &ctn);
        CHECK(back && got == n && memcmp(back, plain, n) == 0);
        CHECK(ctn == PHT_IV_LEN + (n / 16 + 1) * 16);
        free(back);
        free(ct);
        free(plain);
    }
    /* A truncated file fails and leaves no partial plaintext behind. */
    CHECK(truncate(enc, PHT_IV_LEN + 1000000 / 16 * 16 - 1) == 0);
    CHECK_CODE(pht_decrypt_file(key, enc, dec, &err), PHT_ECRYPTO, &err);
    CHECK_STR_CONTAINS(err.message, "test_crypt.enc");
    CHECK_STR_CONTAINS(err.message, "bad decrypt");
    CHECK(access(dec, F_OK) != 0);
    CHECK_CODE(pht_encrypt_file(key, src, src, &err), PHT_EINVAL, &err);
    CHECK_STR_CONTAINS(err.message, "same file");
    unlink(src);
    CHECK_CODE(pht_encrypt_file(key, src, enc, &err), PHT_EIO, &err);
    CHECK_STR_CONTAINS(err.message, "test_crypt.plain: cannot open");
    unlink(enc);
}

static pht_key *fixture_key(const char *name)
{
    char path[1024];
    pht_error err;
    snprintf(path, sizeof path, "%s/reference-v2/keys/%s.pem", test_fixtures(), name);
    pht_key *k = pht_key_load_private_file(path, NULL, &err);
    if (k == NULL) fprintf(stderr, "%s\n", err.message);
    return k;
}

static void test_wrap(const pht_symkey *key)
{
    pht_error err;
    pht_key *priv = fixture_key("station_2"), *other = fixture_key("station_3");
    if (priv == NULL || other == NULL) {
        CHECK(0);
        return;
    }
    unsigned char *w = NULL, *w2 = NULL;
    size_t wlen = 0, w2len = 0;
    CHECK_OK(pht_symkey_wrap(key, priv, &w, &wlen, &err), &err);
    CHECK(wlen == 256);
    CHECK_OK(pht_symkey_wrap(key, priv, &w2, &w2len, &err), &err);
    CHECK(memcmp(w, w2, wlen) != 0); /* OAEP is randomised */
    free(w2);
    pht_symkey *back = pht_symkey_unwrap(priv, w, wlen, &err);
    CHECK(back != NULL);
    unsigned char a[32], b[32];
    pht_symkey_export(key, a);
    if (back) pht_symkey_export(back, b);
    CHECK(back && memcmp(a, b, 32) == 0);
    pht_symkey_free(back);

    CHECK(pht_symkey_unwrap(other, w, wlen, &err) == NULL);
    CHECK(err.code == PHT_ECRYPTO);
    CHECK_STR_CONTAINS(err.message, "cannot decrypt");
    for (size_t i = 0; i < wlen; i += 31) {
        w[i] ^= 0x10;
        CHECK(pht_symkey_unwrap(priv, w, wlen, &err) == NULL && err.code == PHT_ECRYPTO);
        w[i] ^= 0x10;
    }
    CHECK(pht_symkey_unwrap(priv, w, wlen - 1, &err) == NULL && err.code == PHT_EFORMAT);
    CHECK_STR_CONTAINS(err.message, "wrapped key is 255 bytes");
    free(w);

    /* OAEP-wrapped bytes that are not 32 long are no symmetric key. */
    char pub_pem_path[1024];
    snprintf(pub_pem_path, sizeof pub_pem_path, "%s/reference-v2/keys/station_2.pub.pem",
             test_fixtures());
    FILE *f = fopen(pub_pem_path, "rb");
    char pem[2048];
    size_t pemlen = fread(pem, 1, sizeof pem, f);
    fclose(f);
    pht_key *pub = pht_key_load_public_pem(pem, pemlen, &err);
    CHECK(pht_symkey_unwrap(pub, w, 256, &err) == NULL && err.code == PHT_ESTATE);
    pht_key_free(pub);
    /* Made with OpenSSL directly: OAEP SHA-512 of 16 bytes. */
    BIO *bio = BIO_new_mem_buf(pem, (int)pemlen);
    EVP_PKEY *pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
    unsigned char short_ct[256];
    size_t sl = sizeof short_ct;
    EVP_PKEY_encrypt_init(ctx);
    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING);
    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha512());
    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha512());
    CHECK(EVP_PKEY_encrypt(ctx, short_ct, &sl, (const unsigned char *)"sixteen bytes!!!", 16) == 1);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pk);
    CHECK(pht_symkey_unwrap(priv, short_ct, sl, &err) == NULL && err.code == PHT_EFORMAT);
    CHECK_STR_CONTAINS(err.message, "unwrapped 16 bytes");
    pht_key_free(priv);
    pht_key_free(other);
}

int main(void)
{
    pht_error err;
    pht_symkey *key = pht_symkey_new(&err), *key2 = pht_symkey_new(&err);
    CHECK(key && key2);
    unsigned char a[32], b[32];
    pht_symkey_export(key, a);
    pht_symkey_export(key2, b);
    CHECK(memcmp(a, b, 32) != 0);
    pht_symkey_free(key2);
    pht_symkey_free(NULL);
    test_round_trips(key);
    test_fresh_iv(key);
    test_bad_inputs();
    test_files(key);
    test_wrap(key);
    pht_symkey_free(key);
    TEST_DONE();
}
