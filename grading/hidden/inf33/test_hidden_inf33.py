"""inf33 hidden tests: block size 1, a pool of exactly one request, a prompt entirely cached, a prompt shorter
than a block, and all-colliding keys."""
import torch

from exercises.inf33.test_cached_generate import TokenCounter, assert_same_tokens, one_thread  # noqa: F401
from exercises.inf33.test_prefix_cache import Workload, adversarial_sequences
from lab.block_kv import BlockKV
from lab.impl import Topic
from lab.testing import greedy_alone, pick, random_config, random_lab_model

impl = Topic("inf33")


def test_hidden_block_size_one_and_every_key_colliding(rng):
    """hash_fn returns 0 for everything: the cache may share only what it verified token by token."""
    cache = impl.prefix_cache.PrefixCache(pick(rng, 3, 9), 1, hash_fn=lambda parent, block: 0)
    work = Workload(cache)
    for seq in adversarial_sequences(rng, 80, 1):
        work.run(seq, head_first=bool(pick(rng, 0, 1)))


def test_hidden_whole_prompt_cached_and_prompts_shorter_than_a_block(rng):
    """The same prompt twice (its last token is still computed), then prompts shorter than one block."""
    config = random_config(rng)
    model = TokenCounter(random_lab_model(config, rng, torch.float64))
    block_size = pick(rng, 4, 7)
    cache, kv = impl.prefix_cache.PrefixCache(40, block_size), BlockKV(config, 40, block_size, torch.float64)
    prompt = torch.randint(config.vocab_size, (3 * block_size,), generator=rng).tolist()
    for _ in range(2):
        got = impl.cached_generate.generate_with_prefix_cache(model.model, cache, kv, prompt, 4)
        assert_same_tokens(got.tokens, greedy_alone(model.model, prompt, 4)[0], None, "the repeated prompt")
    assert got.num_cached_tokens == 2 * block_size, \
        (f"a repeated {3 * block_size}-token prompt reuses its first 2 blocks (the last token is computed), got "
         f"{got.num_cached_tokens}")
    for n in range(1, block_size):
        short = prompt[:n]
        got = impl.cached_generate.generate_with_prefix_cache(model.model, cache, kv, short, 2)
        assert got.num_cached_tokens == 0
        assert_same_tokens(got.tokens, greedy_alone(model.model, short, 2)[0], None, f"a {n}-token prompt")


def test_hidden_pool_of_exactly_one_request(rng):
    """A pool that holds one request at a time: every new prompt evicts the last one's blocks as needed."""
    config = random_config(rng)
    model = random_lab_model(config, rng, torch.float64)
    block_size = pick(rng, 2, 5)
    prompts = [torch.randint(5, (pick(rng, 5, 20),), generator=rng).tolist() for _ in range(8)]
    num_blocks = max(-(-(len(p) + 3) // block_size) for p in prompts)
    cache = impl.prefix_cache.PrefixCache(num_blocks, block_size)
    kv = BlockKV(config, num_blocks, block_size, torch.float64)
    for i, p in enumerate(prompts + prompts[::-1]):
        got = impl.cached_generate.generate_with_prefix_cache(model, cache, kv, p, 3)
        assert_same_tokens(got.tokens, greedy_alone(model, p, 3)[0], None, f"request {i}")
