"""Scoring as the papers' tables do: gloss WER with NIST sclite costs (`wer`), PHOENIX gloss
clean-up (`gloss_cleanup`), and corpus BLEU-1..4 / sentence-averaged ROUGE-L (`translation`)."""
