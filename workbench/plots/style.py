"""One house style for every figure: white background, readable fonts, consistent colours."""
from __future__ import annotations

import plotly.graph_objects as go

# Okabe–Ito colour-blind-safe palette.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
MODEL_COLORS = {"non-aligned": "#7f7f7f", "aligned": "#0072B2", "attacked": "#D55E00", "repaired": "#009E73"}


def apply_layout(fig: go.Figure, title: str, x: str, y: str, width: int = 760, height: int = 480) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.02, xanchor="left"), xaxis_title=x, yaxis_title=y,
                      template="plotly_white", width=width, height=height, font=dict(size=14),
                      legend=dict(bgcolor="rgba(255,255,255,0.8)", bordercolor="#ccc", borderwidth=1),
                      margin=dict(l=70, r=30, t=60, b=60))
    return fig


PUBLICATION_FONT = dict(family="Helvetica, Arial, sans-serif", size=15)


def publication_layout(fig: go.Figure, title: str, width: int = 760, height: int = 480, right: int = 70,
                       top: int = 70) -> go.Figure:
    """Layout for exported paper figures: centred title, legend below the plot, simple white theme."""
    fig.update_layout(template="simple_white", font=PUBLICATION_FONT, width=width, height=height,
                      title=dict(text=title, x=0.5, xanchor="center", font=dict(size=17)),
                      legend=dict(orientation="h", x=0.5, xanchor="center", y=-0.22, yanchor="top",
                                  bgcolor="rgba(255,255,255,0.85)", bordercolor="#bbb", borderwidth=1),
                      margin=dict(l=70, r=right, t=top, b=130))
    return fig
