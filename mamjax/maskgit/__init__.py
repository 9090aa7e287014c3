"""Masked generative modeling of time series with the enhanced sampling scheme (ESS).

TimeVQVAE-style STFT tokenizer (:mod:`.tokenizer`, :mod:`.vq`), bidirectional
transformer priors trained with the MaskGIT objective (:mod:`.prior`), MaskGIT
iterative decoding as a pure function (:mod:`.decoding`), the self-Token-Critic
(:mod:`.self_critic`), critical reverse sampling and critical resampling
(:mod:`.ess`), two-stage generation (:mod:`.sample`), and an FCN classifier with
FID / IS / CAS (:mod:`.fcn`, :mod:`.metrics`).
"""

from mamjax.maskgit.decoding import MASK_ID, DecodeState, decode, guided_logits, mask_by_random_topk
from mamjax.maskgit.ess import critical_resampling, critical_reverse_sampling, ess_decode
from mamjax.maskgit.metrics import classification_accuracy_score, fid, frechet_distance, inception_score
from mamjax.maskgit.prior import hf_logits_fn, lf_logits_fn, make_priors, maskgit_loss, prior_loss
from mamjax.maskgit.sample import sample_series, sample_tokens
from mamjax.maskgit.self_critic import critic_log_probs, leave_one_out_argmax
from mamjax.maskgit.tokenizer import Tokenizer, istft, stft, tokenizer_functions

__all__ = [
    "MASK_ID", "DecodeState", "decode", "guided_logits", "mask_by_random_topk",
    "critical_reverse_sampling", "critical_resampling", "ess_decode",
    "fid", "frechet_distance", "inception_score", "classification_accuracy_score",
    "make_priors", "maskgit_loss", "prior_loss", "lf_logits_fn", "hf_logits_fn",
    "sample_tokens", "sample_series", "critic_log_probs", "leave_one_out_argmax",
    "Tokenizer", "stft", "istft", "tokenizer_functions",
]
