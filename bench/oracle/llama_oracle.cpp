// llama.cpp as the test oracle: token ids and teacher-forced top-k log-probabilities
// from llama.cpp's own library, for the golden files under testdata/. Built against the
// llama-cpp-python 0.3.36 tree by bench/oracle/build.sh; run by scripts/arch_goldens.py.
//
//   llama_oracle tokenize VOCAB.gguf < {"texts": [...]}
//       -> {"cases": [{"text", "parse_special": [...], "plain": [...]}]}   (BOS as the model adds it)
//   llama_oracle logits MODEL.gguf [--kv f16|f32] [--top K] [--ctx N] < {"prompts": ["..."]}
//       -> {"prompts": [{"text", "tokens": [...], "steps": [[[id, logprob] x K] per position]}]}
//
// Written for this project against llama.h; it only drives the public API.

#include "llama.h"
#include "nlohmann/json.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

using json = nlohmann::json;

static std::vector<llama_token> tokenize(const llama_vocab * vocab, const std::string & text,
                                         bool add_special, bool parse_special) {
    int n = -llama_tokenize(vocab, text.data(), (int32_t) text.size(), nullptr, 0, add_special, parse_special);
    std::vector<llama_token> out(std::max(n, 0));
    if (n > 0) {
        int got = llama_tokenize(vocab, text.data(), (int32_t) text.size(), out.data(), n, add_special, parse_special);
        out.resize(std::max(got, 0));
    }
    return out;
}

static int cmd_tokenize(const char * path) {
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    llama_model * model = llama_model_load_from_file(path, mp);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", path);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    json in = json::parse(std::cin);
    json cases = json::array();
    for (const auto & t : in.at("texts")) {
        std::string text = t.get<std::string>();
        cases.push_back({
            {"text", text},
            {"parse_special", tokenize(vocab, text, true, true)},
            {"plain", tokenize(vocab, text, true, false)},
        });
    }
    std::cout << json({{"cases", cases}}).dump() << "\n";
    llama_model_free(model);
    return 0;
}

static int cmd_logits(int argc, char ** argv) {
    const char * path = argv[2];
    std::string kv = "f16";
    int top = 5;
    int n_ctx = 4096;
    for (int i = 3; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--kv") kv = argv[i + 1];
        else if (a == "--top") top = std::stoi(argv[i + 1]);
        else if (a == "--ctx") n_ctx = std::stoi(argv[i + 1]);
        else { fprintf(stderr, "unknown option %s\n", a.c_str()); return 2; }
    }
    llama_model_params mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(path, mp);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", path);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    json in = json::parse(std::cin);
    json results = json::array();
    for (const auto & p : in.at("prompts")) {
        std::string text = p.get<std::string>();
        std::vector<llama_token> toks = tokenize(vocab, text, true, true);
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = n_ctx;
        cp.n_batch = std::max<int>(toks.size(), 1);
        cp.n_ubatch = cp.n_batch;
        cp.n_threads = 2;
        cp.n_threads_batch = 2;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
        cp.type_k = kv == "f32" ? GGML_TYPE_F32 : GGML_TYPE_F16;
        cp.type_v = cp.type_k;
        llama_context * ctx = llama_init_from_model(model, cp);
        if (!ctx) {
            fprintf(stderr, "cannot create a context\n");
            return 1;
        }
        llama_batch batch = llama_batch_init((int32_t) toks.size(), 0, 1);
        for (size_t i = 0; i < toks.size(); i++) {
            batch.token[i] = toks[i];
            batch.pos[i] = (llama_pos) i;
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i] = 1;
        }
        batch.n_tokens = (int32_t) toks.size();
        if (llama_decode(ctx, batch) != 0) {
            fprintf(stderr, "llama_decode failed\n");
            return 1;
        }
        json steps = json::array();
        std::vector<int> idx(n_vocab);
        for (size_t i = 0; i < toks.size(); i++) {
            const float * l = llama_get_logits_ith(ctx, (int32_t) i);
            double mx = -INFINITY;
            for (int v = 0; v < n_vocab; v++) mx = std::max(mx, (double) l[v]);
            double z = 0;
            for (int v = 0; v < n_vocab; v++) z += std::exp((double) l[v] - mx);
            double lz = mx + std::log(z);
            for (int v = 0; v < n_vocab; v++) idx[v] = v;
            std::partial_sort(idx.begin(), idx.begin() + top, idx.end(),
                              [&](int a, int b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
            json step = json::array();
            for (int k = 0; k < top; k++) step.push_back({idx[k], (double) l[idx[k]] - lz});
            steps.push_back(step);
        }
        results.push_back({{"text", text}, {"tokens", toks}, {"steps", steps}});
        llama_batch_free(batch);
        llama_free(ctx);
    }
    std::cout << json({{"prompts", results}}).dump() << "\n";
    llama_model_free(model);
    return 0;
}

int main(int argc, char ** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: llama_oracle tokenize VOCAB.gguf | logits MODEL.gguf [--kv f16|f32] [--top K] [--ctx N]\n");
        return 2;
    }
    llama_log_set([](ggml_log_level level, const char * text, void *) {
        if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
    }, nullptr);
    llama_backend_init();
    std::string cmd = argv[1];
    int rc = cmd == "tokenize" ? cmd_tokenize(argv[2]) : cmd == "logits" ? cmd_logits(argc, argv) : 2;
    llama_backend_free();
    return rc;
}
