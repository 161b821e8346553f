"""Formulas: kvmodel's closed forms rendered from sympy expressions (symbols only, no numbers)."""

from __future__ import annotations

from typing import Any

import streamlit as st

import kvmodel

TABS = ["Load vs recompute", "Queueing", "Roofline"]


@st.cache_resource(show_spinner=False)
def queueing() -> list[tuple[str, str, str]]:
    """(title, LaTeX, note) of the queueing closed forms documented in kvmodel.instance._queueing."""
    import sympy as sp

    lam, mu, ES, ES2, rho, ca, cs, W, L, q, p = sp.symbols(
        "lambda mu E[S] ES2 rho c_a c_s W L q p", positive=True)
    c, k = sp.symbols("c k", positive=True, integer=True)
    a = sp.Symbol("a", positive=True)
    Wq = sp.Symbol("W_q", positive=True)
    U = sp.UnevaluatedExpr  # keeps (c_a^2 + c_s^2) together in the rendering
    pk = lam * ES2 / 2 / (1 - rho)
    kingman = U(ca**2 + cs**2) / 2 * rho / (1 - rho) * ES
    pk_mg1 = U(1 + cs**2) / 2 * rho / (1 - rho) * ES
    # P-K with E[S^2] = (1 + c_s^2) E[S]^2 and rho = lambda E[S] equals Kingman at c_a = 1
    derived = pk.subs(ES2, (1 + cs**2) * ES**2).subs(lam, rho / ES)
    assert sp.simplify(derived - pk_mg1.doit()) == 0
    assert sp.simplify(pk_mg1.doit() - kingman.doit().subs(ca, 1)) == 0
    term = a**c / sp.factorial(c) * c / (c - a)
    erlang_c = term / (sp.Sum(a**k / sp.factorial(k), (k, 0, c - 1)) + term)
    erlang_b = (a**c / sp.factorial(c)) / sp.Sum(a**k / sp.factorial(k), (k, 0, c))
    B = sp.Symbol("B(c, a)")
    C = sp.Function("C")(c, a)
    ac = C / (c * mu - lam) * U(ca**2 + cs**2) / 2
    quant = W / p * sp.log(p / (1 - q))

    def eq(lhs: Any, rhs: Any) -> str:
        return sp.latex(sp.Eq(lhs, rhs, evaluate=False), symbol_names={ES2: r"E[S^{2}]"})

    return [
        ("Little's law", eq(L, lam * W), "holds for every queueing result (tested)"),
        ("Utilisation", eq(rho, lam * ES), "stable only while ρ < 1; at ρ ≥ 1 latencies are ∞"),
        ("Pollaczek–Khinchine (M/G/1 mean wait)", eq(Wq, pk), ""),
        ("… with E[S²] = (1 + c_s²)·E[S]²", eq(Wq, pk_mg1),
         "sympy checks (on every app start) that this equals Kingman's form at c_a = 1"),
        ("Kingman (G/G/1 heavy traffic, prefill wait)", eq(Wq, kingman),
         "exact for M/M/1 and M/D/1"),
        ("Erlang C (M/M/c probability of waiting)", eq(C, erlang_c), ""),
        ("… evaluated through Erlang B", eq(C, B / (1 - a / c * (1 - B))) + r",\quad "
         + eq(B, erlang_b), "a = λ/μ; numerically stable for thousands of servers"),
        ("Allen–Cunneen (G/G/c mean wait, KV-slot wait)", eq(Wq, ac), ""),
        ("Wait quantile", eq(sp.Symbol("t_q"), quant),
         "0 with probability 1 − p, else exponential with mean W/p (for q > 1 − p)"),
    ]


@st.cache_resource(show_spinner=False)
def roofline() -> list[tuple[str, str, str]]:
    import sympy as sp

    F, Bt, Fp, eF, Bw, eB, n, tk = sp.symbols(
        r"F B_{op} F_{peak} eta_F B_{HBM} eta_B n_k t_k", positive=True)
    Lyr, hkv, d, b, r, dr = sp.symbols(r"L h_{kv} d b r d_{rope}", positive=True)
    t = sp.Max(F / (Fp * eF), Bt / (Bw * eB)) + n * tk
    eq = lambda lhs, rhs: sp.latex(sp.Eq(lhs, rhs, evaluate=False))  # noqa: E731
    return [
        ("Operator time (roofline)", eq(sp.Symbol("t_{op}"), t),
         "η: measured efficiency × calibrated global factor; n_k kernels of latency t_k"),
        ("KV bytes per token (MHA/GQA/MQA)", eq(sp.Symbol("k"), 2 * Lyr * hkv * d * b), ""),
        ("KV bytes per token (MLA)", eq(sp.Symbol("k"), Lyr * (r + dr) * b),
         "latent rank r plus the decoupled RoPE dimension"),
    ]


def show(items: list[tuple[str, str, str]]) -> None:
    for title, tex, note in items:
        st.markdown(f"**{title}**")
        st.latex(tex)
        if note:
            st.caption(note)


def break_even() -> None:
    f: dict[str, Any] = kvmodel.break_even_formulas()["latex"]
    show([
        ("Recompute time of a P-token prefix", r"t_{\mathrm{rec}}(P) = " + f["t_recompute"],
         "c₀ fixed costs, τ everything linear in tokens, α causal attention"),
        ("Load time", r"t_{\mathrm{load}}(P) = " + f["t_load"], "k KV bytes per token, B bandwidth"),
        ("Break-even bandwidth", r"B^*(P) = " + f["B_star"], "loading wins above it"),
        ("Break-even prefix length", r"P^* = " + f["P_star"], "loading wins beyond it"),
    ])


def main() -> None:
    st.title("Formulas")
    st.caption("The closed forms behind kvmodel, rendered from sympy. Break-even from "
               "`kvmodel.break_even_formulas()`; queueing and roofline built here from the "
               "formulas documented in kvmodel.")
    # the open tab is part of the link (?tab=Queueing), like every other widget of the app
    tabs = st.tabs(TABS, key="tab", bind="query-params")
    with tabs[0]:
        break_even()
    with tabs[1]:
        show(queueing())
    with tabs[2]:
        show(roofline())


main()
