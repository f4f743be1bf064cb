"""A generated corpus of secrets and personal data, and one of benign ML text.

:func:`secrets` returns ``(kind, secret, text)``: ``text`` is a realistic line that carries
``secret``; after redaction ``secret`` must appear nowhere. Values are synthetic (random, with
valid checksums where real ones have them: Luhn, IBAN mod 97, phone numbering plans), shaped
like the real thing, from a fixed seed so a failure reproduces. :func:`benign` returns lines of
ordinary ML output that must come through untouched.
"""

from __future__ import annotations

import base64
import random
import string
from collections.abc import Callable

import phonenumbers

Item = tuple[str, str, str]
_B64 = string.ascii_letters + string.digits
_HEX = "0123456789abcdef"


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    while True:
        out = "".join(rng.choice(alphabet) for _ in range(n))
        # a random key mixes classes; drop the rare draw with none of one (no real key looks like that)
        if alphabet != _B64 or (any(c.isdigit() for c in out) and any(c.isupper() for c in out)):
            return out


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        candidate = body + check
        total = 0
        for i, ch in enumerate(reversed(candidate)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


def _iban(country: str, bban: str) -> str:
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def _phones(rng: random.Random) -> list[tuple[str, str]]:
    """(region, E.164 number) pairs that the numbering plans accept."""
    out = []
    for region in ("GB", "DE", "FR", "IN", "JP", "AU", "NL", "CH", "IT", "BR"):
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            base = str(example.national_number)
            for _ in range(20):
                national = base[:-3] + "".join(rng.choice(string.digits) for _ in range(3))
                number = phonenumbers.parse(f"+{example.country_code}{national}")
                if phonenumbers.is_valid_number(number):
                    out.append((region, number))
                    break
    return out


def _fmt(number: phonenumbers.PhoneNumber, style: int) -> str:
    return phonenumbers.format_number(number, style)


def _phone_items(rng: random.Random) -> list[Item]:
    items: list[Item] = []
    intl = phonenumbers.PhoneNumberFormat.INTERNATIONAL
    for region, number in _phones(rng):
        text = _fmt(number, intl)
        items.append(("phone_intl", text, f"escalate to on-call {text} if the loss diverges"))
        items.append(("phone_00", "00" + text[1:], f"customer callback 00{text[1:]} requested"))
        if region == "GB":
            national = _fmt(number, phonenumbers.PhoneNumberFormat.NATIONAL)
            items.append(("phone_national_uk", national, f"support line {national} (office hours)"))
    for _ in range(6):
        london = f"020 7946 0{rng.randint(100, 999)}"
        items.append(("phone_national_uk", london, f"user phoned from {london} about the outage"))
        items.append(("phone_00", f"0044 20 7946 0{rng.randint(100, 999)}", "x"))
        items[-1] = ("phone_00", items[-1][1], f"callback {items[-1][1]} please")
    for _ in range(8):
        area, ex, line = rng.choice(["202", "312", "415", "646", "617"]), rng.randint(200, 999), rng.randint(1000, 9999)
        us = f"({area}) {ex}-{line}"
        items.append(("phone_us", us, f"contact: {us}"))
        items.append(("phone_us", f"+1 {area}-{ex}-{line}", f"sms alerts to +1 {area}-{ex}-{line}"))
    return items


def _card_items(rng: random.Random) -> list[Item]:
    items: list[Item] = []
    brands = [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16), ("65", 16)]
    templates = [
        "payment with {} declined",
        "card={} exp=12/29",
        "charge failed for cc {}",
        "feature row: amount=12.5 pan {}",
        "billing card {} on file",
    ]
    for i in range(20):
        prefix, length = brands[i % len(brands)]
        number = _luhn_complete(prefix, length, rng)
        shown = " ".join(number[j : j + 4] for j in range(0, len(number), 4)) if i % 3 == 0 else number
        items.append(("card", shown, templates[i % len(templates)].format(shown)))
    return items


def _email_items(rng: random.Random) -> list[Item]:
    names = ["jane.doe", "ml-ops+alerts", "a_b", "o.brien", "k.tanaka", "data.team", "x9"]
    domains = ["example.com", "corp.example.org", "sub.domain.co.uk", "mail.example.net", "example.io"]
    items: list[Item] = []
    for i in range(12):
        addr = f"{names[i % len(names)]}{rng.randint(1, 99)}@{domains[i % len(domains)]}"
        items.append(("email", addr, f"user {addr} failed to load checkpoint"))
    unicode_addrs = [
        "jürgen.müller@beispiel.de",
        "josé.garcía@correo.es",
        "用户@例子.广告",
        "δοκιμή@παράδειγμα.δοκιμή",
        "françois@exemple.fr",
        "søren@eksempel.dk",
        "ivan.petrov@пример.рф",
        "zoë@straße.de",
    ]
    for addr in unicode_addrs:
        items.append(("email_unicode", addr, f"notify {addr} on drift"))
    return items


def _network_items(rng: random.Random) -> list[Item]:
    items: list[Item] = []
    for _ in range(8):
        ip = f"{rng.choice([10, 172, 192, 203, 198])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        items.append(("ipv4", ip, f"connect to {ip} refused"))
    for _ in range(6):
        ip6 = "2001:db8:" + ":".join(f"{rng.randint(0, 0xFFFF):x}" for _ in range(6))
        items.append(("ipv6", ip6, f"peer {ip6} reset the stream"))
    return items


def _url_items(rng: random.Random) -> list[Item]:
    items: list[Item] = []
    schemes = ["mysql", "redis", "amqp", "postgresql", "mongodb+srv", "https", "rediss", "ftp"]
    for i, scheme in enumerate(schemes * 2):
        password = _rand(rng, _B64, 12) + "!x"
        user = "" if scheme.startswith("redis") and i % 2 else f"svc{i}"
        url = f"{scheme}://{user}:{password}@db{i}.internal:5432/prod"
        items.append(("url_credentials", password, f"connecting with {url} (pool=5)"))
    hook = f"https://hooks.slack.com/services/T{_rand(rng, _B64.upper(), 8)}/B{_rand(rng, _B64.upper(), 8)}/"
    for _ in range(4):
        secret = _rand(rng, _B64, 24)
        items.append(("slack_webhook", secret, f"posting alert to {hook}{secret}"))
    for _ in range(3):
        secret = _rand(rng, _B64 + "-_", 68)
        url = f"https://discord.com/api/webhooks/{rng.randint(10**17, 10**18)}/{secret}"
        items.append(("discord_webhook", secret, f"webhook {url} returned 204"))
    return items


def _keyword_items(rng: random.Random) -> list[Item]:
    templates = [
        "db connect password={} host=db",
        "DB_PASSWORD: {}",
        "db_pass: {}",
        "api_key={}",
        "X-Api-Key: {}",
        "auth_token='{}'",
        '{{"client_secret": "{}"}}',
        "pwd={}",
        "redis_password = {}",
        "the token is {}",
        "config.secret_key={}",
        "dbPassword: {}",
        "passphrase: {}",
        "SMTP_PASS={}",
    ]
    items: list[Item] = []
    for i, template in enumerate(templates):
        value = _rand(rng, string.ascii_letters + string.digits + "@#%", 10 + i % 5)
        items.append(("keyword_assignment", value, template.format(value)))
    cli = [
        "python train.py --password {} --epochs 3",
        "launch --db-password={} --workers 4",
        "mysql -u root -p {} -h db",
        "mysqldump -u backup -p{} prod",
        "redis-cli -a x -p 6379 --pass {}",
        "deploy --api-key {} --region eu",
        "login --token={}",
    ]
    for template in cli:
        value = _rand(rng, _B64, 14)
        items.append(("cli_password", value, template.format(value)))
    return items


def _key_items(rng: random.Random) -> list[Item]:
    r = rng
    aws_secret = [_rand(r, _B64 + "/+", 40) for _ in range(5)]
    makers: list[tuple[str, Callable[[], str], str]] = [
        ("aws_access_key", lambda: "AKIA" + _rand(r, string.ascii_uppercase + string.digits, 16), "creds {} loaded"),
        ("aws_access_key", lambda: "ASIA" + _rand(r, string.ascii_uppercase + string.digits, 16), "session {}"),
        ("github_token", lambda: "ghp_" + _rand(r, _B64, 36), "git clone https://{}@github.com/org/repo"),
        ("github_token", lambda: "github_pat_11" + _rand(r, _B64 + "_", 70), "GH_TOKEN {}"),
        ("gitlab_token", lambda: "glpat-" + _rand(r, _B64 + "-_", 20), "gitlab ci uses {}"),
        (
            "slack_token",
            lambda: f"xoxb-{r.randint(10**10, 10**11)}-{r.randint(10**10, 10**11)}-" + _rand(r, _B64, 24),
            "slack bot {}",
        ),
        ("stripe_key", lambda: "sk_live_" + _rand(r, _B64, 24), "stripe {}"),
        ("stripe_key", lambda: "whsec_" + _rand(r, _B64, 32), "webhook signing secret {}"),
        ("stripe_key", lambda: "rk_live_" + _rand(r, _B64, 24), "restricted {}"),
        ("openai_key", lambda: "sk-proj-" + _rand(r, _B64 + "-_", 48), "OPENAI {} set"),
        ("openai_key", lambda: "sk-" + _rand(r, _B64, 20) + "T3BlbkFJ" + _rand(r, _B64, 20), "legacy key {}"),
        ("anthropic_key", lambda: "sk-ant-api03-" + _rand(r, _B64 + "-_", 60), "claude {} ok"),
        ("google_key", lambda: "AIza" + _rand(r, _B64 + "-_", 35), "maps key {}"),
        ("huggingface_token", lambda: "hf_" + _rand(r, _B64, 34), "hub login {}"),
        ("pypi_token", lambda: "pypi-AgEIcHlwaS5vcmc" + _rand(r, _B64 + "-_", 80), "twine upload -p {}"),
        ("npm_token", lambda: "npm_" + _rand(r, _B64, 36), "//registry.npmjs.org/:_authToken={}"),
        ("sendgrid_key", lambda: "SG." + _rand(r, _B64 + "-_", 22) + "." + _rand(r, _B64 + "-_", 43), "mail {}"),
        ("square_token", lambda: "sq0csp-" + _rand(r, _B64 + "-_", 43), "square {}"),
        ("square_token", lambda: "sq0atp-" + _rand(r, _B64 + "-_", 22), "square access {}"),
        ("twilio_key", lambda: "AC" + _rand(r, _HEX, 32), "twilio account {}"),
        ("twilio_key", lambda: "SK" + _rand(r, _HEX, 32), "twilio api {}"),
        ("mailchimp_key", lambda: _rand(r, _HEX, 32) + "-us" + str(r.randint(1, 20)), "mailchimp {}"),
        ("telegram_token", lambda: f"{r.randint(10**8, 10**9)}:" + _rand(r, _B64 + "-_", 35), "bot {} polling"),
        (
            "discord_token",
            lambda: "M" + _rand(r, _B64, 23) + "." + _rand(r, _B64, 6) + "." + _rand(r, _B64, 27),
            "discord bot {}",
        ),
        (
            "azure_storage_key",
            lambda: _rand(r, _B64 + "+/", 86) + "==",
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={};EndpointSuffix=core.windows.net",
        ),
        ("artifactory_token", lambda: "AKC" + _rand(r, _B64, 70), "artifactory {}"),
        ("ibm_key", lambda: _rand(r, _B64 + "-_", 44), "ibm_cloud_api_key: {}"),
        ("softlayer_key", lambda: _rand(r, _HEX + "ghijklmnop", 64), "softlayer_api_key={}"),
        ("bearer", lambda: _rand(r, _B64 + "._-", 40), "Authorization: Bearer {}"),
        (
            "basic_auth",
            lambda: base64.b64encode(f"user:{_rand(r, _B64, 10)}".encode()).decode(),
            '{{"Authorization": "Basic {}"}}',
        ),
        ("aws_secret_key", lambda: aws_secret.pop(), "aws_secret_access_key={}"),
        ("aws_secret_key", lambda: _rand(r, _B64 + "/+", 40), "s3 signer key/{}"),
        ("high_entropy", lambda: _rand(r, _B64, 40), "X-Signature: {}"),
        ("high_entropy", lambda: _rand(r, _B64 + "_-", 48), "session blob {} expired"),
    ]
    items: list[Item] = []
    for kind, make, template in makers:
        for _ in range(3):
            value = make()
            items.append((kind, value, template.format(value)))
    return items


def _jwt(rng: random.Random) -> str:
    def part(n: int) -> str:
        return base64.urlsafe_b64encode(rng.randbytes(n)).decode().rstrip("=")

    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    claims = base64.urlsafe_b64encode(f'{{"sub":"{rng.randint(1, 10**9)}"}}'.encode()).decode().rstrip("=")
    return f"{header}.{claims}.{part(32)}"


def _private_key_items(rng: random.Random) -> list[Item]:
    items: list[Item] = []
    for kind in ("RSA ", "EC ", "OPENSSH ", "", "ENCRYPTED ", "DSA "):
        body = base64.b64encode(rng.randbytes(48)).decode()
        block = f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n{body[::-1]}\n-----END {kind}PRIVATE KEY-----"
        items.append(("private_key", body, f"loaded key:\n{block}\nok"))
        truncated = f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n{body[:20]}"
        items.append(("private_key_no_end", body, f"config dump: {truncated}"))
    body = base64.b64encode(rng.randbytes(48)).decode()
    items.append(("private_key", body, f'{{"key": "-----BEGIN EC PRIVATE KEY-----\\n{body}\\n"}}'))
    for _ in range(2):  # a GCP service-account file logged whole: the key's own name comes first
        body = base64.b64encode(rng.randbytes(48)).decode()
        key = f"-----BEGIN PRIVATE KEY-----\\n{body}\\n-----END PRIVATE KEY-----\\n"
        sa = f'{{"type": "service_account", "private_key": "{key}"}}'
        items.append(("private_key", body, sa))
    return items


def _personal_items(rng: random.Random) -> list[Item]:
    items: list[Item] = []
    for _ in range(10):
        area = rng.choice([n for n in range(1, 900) if n != 666])
        ssn = f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
        items.append(("ssn", ssn, rng.choice(["ssn {} on file", "applicant {} approved", "SSN: {}"]).format(ssn)))
    banks = [
        ("GB", lambda: _rand(rng, string.ascii_uppercase, 4) + _rand(rng, string.digits, 14)),
        ("DE", lambda: _rand(rng, string.digits, 18)),
        ("FR", lambda: _rand(rng, string.digits, 23)),
        ("NL", lambda: _rand(rng, string.ascii_uppercase, 4) + _rand(rng, string.digits, 10)),
        ("ES", lambda: _rand(rng, string.digits, 20)),
        ("IT", lambda: "X" + _rand(rng, string.digits, 22)),
    ]
    for country, bban in banks * 2:
        iban = _iban(country, bban())
        spaced = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
        shown = spaced if rng.random() < 0.5 else iban
        items.append(("iban", shown, f"refund to IBAN {shown} queued"))
    for _ in range(5):
        token = _jwt(rng)
        items.append(("jwt", token, f"cookie jwt {token} expired"))
    return items


def secrets(seed: int = 7) -> list[Item]:
    """Every corpus item: ``(kind, secret, text)``."""
    rng = random.Random(seed)
    out: list[Item] = []
    for make in (
        _phone_items,
        _card_items,
        _email_items,
        _network_items,
        _url_items,
        _keyword_items,
        _key_items,
        _private_key_items,
        _personal_items,
    ):
        out.extend(make(rng))
    return out


_BENIGN_FIXED = [
    "cudnn 8.9.2.26",
    "auth: healthy",
    "auth_enabled: true",
    "sample 4539578763621486 skipped (corrupt jpeg)",
    "sample_id=4111111111111111",
    "step 12000 loss=0.3124 acc=0.9812 lr=3e-4 grad_norm=4.2",
    "epoch 3/10 train_loss 0.2931 val_loss 0.3350 val_acc 0.9021",
    "torch==2.1.0+cu121 numpy 1.26.4 transformers==4.35.2 python 3.11.7",
    "nvidia driver 535.104.05 cuda 12.2 cudnn 8.9.2.26 nccl 2.18.3",
    "libcudnn8_8.9.2.26-1+cuda12.1_amd64.deb",
    "tensorrt 8.6.1.6 onnxruntime-gpu 1.16.3",
    "num_tokens=2048 max_new_tokens: 512 token_count=5000 tokenizer=gpt2",
    "date 2024-01-15 time 12:30:45.123 utc",
    "2024-03-05T17:22:09.481Z INFO started",
    "std::vector<float> and torch::nn::Linear in the C++ frontend",
    "shape (32, 3, 224, 224) dtype float32 device cuda:0",
    "port 9092 broker 1 partition 3 offset 12345678",
    "MAC 00:1a:2b:3c:4d:5e on eth0",
    "layer.3.attention.self.query.weight shape [768, 768]",
    "throughput 1,234,567 samples/s on 8 GPUs",
    "seed 1234567890 for reproducibility",
    "git clone git@github.com:org/repo.git",
    "https://huggingface.co/bert-base-uncased/resolve/main/config.json",
    "https://github.com/pytorch/pytorch/blob/main/torch/nn/modules/linear.py",
    "s3://ml-datasets/imagenet/train/n01440764/n01440764_10026.JPEG",
    "/home/runner/work/models/checkpoints/epoch=3-step=12000.ckpt",
    "meta-llama/Meta-Llama-3-8B-Instruct",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "sentence-transformers/all-MiniLM-L6-v2",
    "google/flan-t5-xxl and EleutherAI/gpt-neox-20b",
    "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k",
    "uuid 123e4567-e89b-12d3-a456-426614174000 done",
    "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
    "request 1234567812345678 served in 12.3 ms",
    "order id 4111111111111112 shipped",
    "wandb run abc123xy synced; mlflow run_id 5f1d2c3b4a",
    "phone_feature_count=3 email_domain_count=12",
    "Basic statistics: mean, variance and quantiles per feature",
    "tokens_per_second=4321.5 and auth_enabled: true",
    "password_min_length=12 token_ttl=3600 secret_name=db-creds",
    "auth: ok, token: none, password: null",
    "pwd=/workspace/project",
    "gpu memory 23456 MiB / 81920 MiB, util 97 %",
    "accuracy 98.7% on 10000 test images (0.9870)",
    "AUC 0.912, F1 0.884, precision 0.90, recall 0.87",
    "lr schedule 0.1 -> 0.01 at epochs 30, 60, 90",
    "BASE64_SAMPLE_ID_0000000000000000000000",
    "model resnet50-v1.5 version 2.0.1 fine-tuned",
    "fraud-v3 scored 0.97 for txn batch 4412",
    "bert-base-uncased",
    "val/loss",
    "train/grad_norm",
    "eval/accuracy@1",
    "optimizer.param_groups.0.lr",
    "hparams: lr=0.001 batch_size=256 weight_decay=0.01 warmup_steps=500 dropout=0.1",
    "--lr 3e-4 --batch-size 64 --epochs 90 --workers 8 -p 0.5",
    "python -m torch.distributed.run --nproc_per_node=8 train.py --config configs/vit.yaml",
    "ResNet50_Weights.IMAGENET1K_V2",
    "CUDA_VISIBLE_DEVICES=0,1,2,3 NCCL_DEBUG=INFO",
    "version 10.2.0.1 of the feature store client",
    "build 1.2.3.4567 ready",
    "released in v2023.10.1; changelog at docs/CHANGELOG.md",
    "LlamaFineTuneLoRAr16Alpha32Dropout05",
    "ResNet50ImageNet1KBaselineV2Run3",
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    "HuggingFaceH4/zephyr-7b-beta",
    "WizardLMTeam/WizardCoder-Python-34B-V1.0",
    "runs/Jan15_12-30-45_gpu-node-17/events.out.tfevents.1705321845.gpu-node-17.4242.0",
    "Epoch 1/3: 100%|##########| 1563/1563 [02:15<00:00, 11.53it/s, loss=0.231]",
    "Setting `pad_token_id` to `eos_token_id`:50256 for open-end generation.",
    "eos_token: </s>, bos_token: <s>, unk_token: <unk>",
    "pass@1=0.45 pass@10=0.71",
    "Driver Version: 535.104.05   CUDA Version: 12.2",
    "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-1b2c3d4e-5f60-7a8b-9c0d-1e2f3a4b5c6d)",
    "MASTER_ADDR=localhost MASTER_PORT=29500",
    "key=val_loss mode=min",
    "token_budget=4096 auth_method: oauth2 secret_scanning: enabled",
    'ETag "d41d8cd98f00b204e9800998ecf8427e"',
    "image_id 4929804463622139 label cat",
    "compass=north bypass=enabled",
]


def benign(seed: int = 11) -> list[str]:
    """Ordinary ML text (at least 200 lines) that redaction must leave exactly as it is."""
    rng = random.Random(seed)
    out = list(_BENIGN_FIXED)
    for _ in range(30):
        out.append(f"step {rng.randint(1, 10**6)} loss={rng.random():.4f} lr={rng.random() / 100:.2e}")
    for _ in range(20):
        out.append(f"commit {rng.randbytes(20).hex()}")
        out.append(f"sha256:{rng.randbytes(32).hex()}")
    for _ in range(15):
        out.append(f"checkpoint-{rng.randint(100, 99999)}/pytorch_model-{rng.randint(1, 9):05d}-of-00009.bin")
    for _ in range(15):
        out.append(f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:00:00 epoch done")
    for _ in range(15):
        ver = ".".join(str(rng.randint(0, 20)) for _ in range(rng.choice([2, 3])))
        out.append(f"{rng.choice(['numpy', 'scipy', 'torch', 'jax', 'xgboost'])}=={ver}")
    for _ in range(15):
        out.append(f"unix_ts={rng.randint(1_600_000_000, 1_800_000_000)} step_id={rng.randint(0, 10**9)}")
    for _ in range(10):
        out.append(f"https://wandb.ai/team/project/runs/{_rand(rng, string.ascii_lowercase + string.digits, 8)}")
    return out
