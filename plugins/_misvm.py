"""mi-SVM (Andrews, Tsochantaridis & Hofmann, NIPS 2002): a linear SVM on instances whose labels
inside positive bags are unknown.

A bag is labelled positive when at least one of its instances is. Every instance of a negative
bag is negative; the instances of positive bags start positive and are relabelled in turn::

    y_i = Y_bag(i)
    repeat
        train an SVM on (x_i, y_i)
        y_i = sign(f(x_i)) for the instances of positive bags
        the highest-scoring instance of a positive bag left without a positive becomes positive
    until no label changes (or max_iter)

The SVM is scikit-learn's ``LinearSVC`` with the standard hinge loss of Andrews et al.'s SVM
(``loss="hinge"``, solved in the dual; L2 penalty); ``loss="squared_hinge"`` is scikit-learn's
default, kept as an option.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.svm import LinearSVC


class MISVM:
    """Instance-level multiple-instance SVM; ``decision_function`` scores single instances."""

    def __init__(self, C: float = 1.0, max_iter: int = 10, random_state: int = 0, loss: str = "hinge"):
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state
        self.loss = loss

    def fit(self, bags: Sequence[np.ndarray], bag_labels: np.ndarray) -> MISVM:
        """Fit on bags (n_i, D) with labels bool (N,); needs a positive and a negative bag.

        Sets ``svm_`` (the final LinearSVC), ``instance_labels_`` bool (sum n_i,) (the labels
        it was trained on, bags concatenated in order) and ``n_iter_`` (SVMs trained).
        """
        bag_labels = np.asarray(bag_labels, dtype=bool)
        sizes = np.array([len(b) for b in bags])
        if len(bags) != len(bag_labels):
            raise ValueError(f"{len(bags)} bags but {len(bag_labels)} bag labels")
        if (sizes == 0).any():
            raise ValueError(f"bag {int(np.argmin(sizes))} is empty")
        if bag_labels.all() or not bag_labels.any():
            raise ValueError("mi-SVM needs at least one positive and one negative bag")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be at least 1, got {self.max_iter}")
        x = np.concatenate(bags).astype(np.float64)  # (n, D), converted once instead of by every LinearSVC fit
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # (N,)
        in_positive = np.repeat(bag_labels, sizes)  # (n,)
        labels = in_positive.copy()
        for iteration in range(1, self.max_iter + 1):
            svm = self._svm().fit(x, labels)
            scores = svm.decision_function(x)  # (n,)
            relabelled = in_positive & (scores > 0)
            for start, size in zip(starts[bag_labels], sizes[bag_labels]):
                if not relabelled[start : start + size].any():
                    relabelled[start + np.argmax(scores[start : start + size])] = True
            if (relabelled == labels).all() or iteration == self.max_iter:
                break
            labels = relabelled
        self.svm_, self.instance_labels_, self.n_iter_ = svm, labels, iteration
        return self

    def _svm(self) -> LinearSVC:
        """One SVM of the loop (liblinear solves the hinge loss in the dual only)."""
        dual = {"dual": True} if self.loss == "hinge" else {}
        return LinearSVC(C=self.C, loss=self.loss, random_state=self.random_state, max_iter=10000, **dual)

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Signed distance of instances (n, D) to the hyperplane -> (n,); positive = positive instance."""
        if not hasattr(self, "svm_"):
            raise NotFittedError("this MISVM is not fitted yet; call fit first")
        return self.svm_.decision_function(x)
