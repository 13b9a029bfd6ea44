/* SHA-512 known answers, the e_h/e_d builders, chain digest and walk order. */
#include <fcntl.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "pht/hash.h"
#include "pht/util.h"
#include "test.h"

static void check_hex(const unsigned char *md, const char *want)
{
    char hex[2 * PHT_SHA512_LEN + 1];
    pht_hex_encode(md, PHT_SHA512_LEN, hex);
    if (strcmp(hex, want) != 0) fprintf(stderr, "got  %s\nwant %s\n", hex, want);
    CHECK(strcmp(hex, want) == 0);
}

/* FIPS 180-2 appendix C and NIST CAVS examples. */
static void test_known_answers(void)
{
    pht_error err;
    unsigned char md[PHT_SHA512_LEN];
    CHECK_OK(pht_sha512("abc", 3, md, &err), &err);
    check_hex(md, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                  "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
    CHECK_OK(pht_sha512("", 0, md, &err), &err);
    check_hex(md, "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
                  "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e");
    const char *two = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                      "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    CHECK_OK(pht_sha512(two, strlen(two), md, &err), &err);
    check_hex(md, "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
                  "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909");

    /* One million 'a', streamed in uneven pieces. */
    pht_hash *h = pht_hash_new(&err);
    CHECK(h != NULL);
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    size_t done = 0, step = 1;
    while (done < 1000000) {
        size_t n = step < 1000000 - done ? step : 1000000 - done;
        CHECK_OK(pht_hash_update(h, a + done, n, &err), &err);
        done += n;
        step = step * 3 + 1;
    }
    free(a);
    CHECK_OK(pht_hash_final(h, md, &err), &err);
    check_hex(md, "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
                  "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b");
    CHECK_CODE(pht_hash_update(h, "x", 1, &err), PHT_ESTATE, &err);
    CHECK_CODE(pht_hash_final(h, md, &err), PHT_ESTATE, &err);
    pht_hash_free(h);
    pht_hash_free(NULL);
}

/* An independent SHA-512 of the concatenation, straight from EVP. */
static void evp_concat(const char **parts, const size_t *lens, size_t n, unsigned char *md)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_DigestInit_ex(c, EVP_sha512(), NULL);
    for (size_t i = 0; i < n; i++)
        EVP_DigestUpdate(c, parts[i], lens[i]);
    EVP_DigestFinal_ex(c, md, NULL);
    EVP_MD_CTX_free(c);
}

static void test_immutable_order(void)
{
    pht_error err;
    const char sid[] = "\x00\x01\x02session\xff";
    const size_t sidlen = sizeof sid - 1;
    unsigned char got[PHT_SHA512_LEN], want[PHT_SHA512_LEN];

    /* creator id, files, session id, query. */
    pht_hash *h = pht_hash_new_immutable("42", 2, (const unsigned char *)sid, sidlen, &err);
    CHECK(h != NULL);
    CHECK_OK(pht_hash_update(h, "file one", 8, &err), &err);
    CHECK_OK(pht_hash_update(h, "file two", 8, &err), &err);
    CHECK_CODE(pht_hash_update(h, NULL, 0, &err), 0, &err);
    CHECK_OK(pht_hash_begin_query(h, &err), &err);
    CHECK_CODE(pht_hash_begin_query(h, &err), PHT_ESTATE, &err);
    CHECK_STR_CONTAINS(err.message, "twice");
    CHECK_OK(pht_hash_update(h, "{\"q\":1}", 7, &err), &err);
    CHECK_OK(pht_hash_final(h, got, &err), &err);
    pht_hash_free(h);
    const char *parts[] = {"42", "file one", "file two", sid, "{\"q\":1}"};
    const size_t lens[] = {2, 8, 8, sidlen, 7};
    evp_concat(parts, lens, 5, want);
    CHECK(memcmp(got, want, PHT_SHA512_LEN) == 0);

    /* Without a query, final adds the session id last. */
    h = pht_hash_new_immutable("42", 2, (const unsigned char *)sid, sidlen, &err);
    CHECK_OK(pht_hash_update(h, "file one", 8, &err), &err);
    CHECK_OK(pht_hash_final(h, got, &err), &err);
    pht_hash_free(h);
    const char *p2[] = {"42", "file one", sid};
    evp_concat(p2, (const size_t[]){2, 8, sidlen}, 3, want);
    CHECK(memcmp(got, want, PHT_SHA512_LEN) == 0);

    /* begin_query belongs to the immutable hash only. */
    h = pht_hash_new_results((const unsigned char *)sid, sidlen, &err);
    CHECK_CODE(pht_hash_begin_query(h, &err), PHT_ESTATE, &err);
    CHECK_OK(pht_hash_update(h, "r1", 2, &err), &err);
    CHECK_OK(pht_hash_update(h, "r2", 2, &err), &err);
    CHECK_OK(pht_hash_final(h, got, &err), &err);
    pht_hash_free(h);
    const char *p3[] = {"r1", "r2", sid};
    evp_concat(p3, (const size_t[]){2, 2, sidlen}, 3, want);
    CHECK(memcmp(got, want, PHT_SHA512_LEN) == 0);
}

static void test_chain_digest(void)
{
    pht_error err;
    unsigned char ed[PHT_SHA512_LEN], got[PHT_SHA512_LEN], want[PHT_SHA512_LEN];
    for (int i = 0; i < PHT_SHA512_LEN; i++)
        ed[i] = (unsigned char)(i * 7);
    const char prev[] = "digest-one-and-two";
    CHECK_OK(pht_chain_digest((const unsigned char *)prev, sizeof prev - 1, ed, got, &err), &err);
    const char *parts[] = {prev, (const char *)ed};
    evp_concat(parts, (const size_t[]){sizeof prev - 1, PHT_SHA512_LEN}, 2, want);
    CHECK(memcmp(got, want, PHT_SHA512_LEN) == 0);
}

static void test_update_file(void)
{
    pht_error err;
    char path[1024];
    snprintf(path, sizeof path, "%s/test_hash_file.bin", test_tmpdir());
    /* Three chunks and a bit, so chunk boundaries are crossed. */
    size_t n = 3 * PHT_CHUNK_SIZE + 123;
    char *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 31 + 7);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && write(fd, data, n) == (ssize_t)n);
    close(fd);
    unsigned char got[PHT_SHA512_LEN], want[PHT_SHA512_LEN];
    pht_hash *h = pht_hash_new(&err);
    CHECK_OK(pht_hash_update_file(h, path, &err), &err);
    CHECK_OK(pht_hash_final(h, got, &err), &err);
    pht_hash_free(h);
    CHECK_OK(pht_sha512(data, n, want, &err), &err);
    CHECK(memcmp(got, want, PHT_SHA512_LEN) == 0);
    free(data);
    unlink(path);

    h = pht_hash_new(&err);
    CHECK_CODE(pht_hash_update_file(h, path, &err), PHT_EIO, &err);
    CHECK_STR_CONTAINS(err.message, "test_hash_file.bin");
    CHECK_STR_CONTAINS(err.message, "No such file");
    pht_hash_free(h);
}

static void test_walk_order(void)
{
    CHECK(pht_path_walk_cmp("a/b.txt", "a-c.txt") < 0);
    CHECK(pht_path_walk_cmp("a-c.txt", "a/b.txt") > 0);
    CHECK(strcmp("a/b.txt", "a-c.txt") > 0); /* what full-path sorting would do */
    CHECK(pht_path_walk_cmp("a", "a/b") < 0);
    CHECK(pht_path_walk_cmp("a/b", "a/b") == 0);
    CHECK(pht_path_walk_cmp("a/z", "a.b") < 0);
    CHECK(pht_path_walk_cmp("B", "a") < 0);            /* bytewise: uppercase first */
    CHECK(pht_path_walk_cmp("x/\xc3\xa9", "x/z") > 0); /* UTF-8 bytes are unsigned */

    /* The order Docker listed the reference train's results in (fixture README). */
    const char *paths[] = {"count.txt", "a-c.txt", "a/numbers.txt", "a/b.txt"};
    pht_path_walk_sort(paths, 4);
    CHECK(strcmp(paths[0], "a/b.txt") == 0);
    CHECK(strcmp(paths[1], "a/numbers.txt") == 0);
    CHECK(strcmp(paths[2], "a-c.txt") == 0);
    CHECK(strcmp(paths[3], "count.txt") == 0);
    const char *deep[] = {"d/e-f", "d/e/g/h", "d/e.x", "d-e", "d/e/g"};
    pht_path_walk_sort(deep, 5);
    CHECK(strcmp(deep[0], "d/e/g") == 0);
    CHECK(strcmp(deep[1], "d/e/g/h") == 0);
    CHECK(strcmp(deep[2], "d/e-f") == 0);
    CHECK(strcmp(deep[3], "d/e.x") == 0);
    CHECK(strcmp(deep[4], "d-e") == 0);
}

int main(void)
{
    test_known_answers();
    test_immutable_order();
    test_chain_digest();
    test_update_file();
    test_walk_order();
    TEST_DONE();
}
